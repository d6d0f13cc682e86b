//! The command registry: name → parameter lists + async handler. The core registers its
//! commands in [`super::builtin`]; modules register theirs the same way.

use super::params::{bind, Raw, Signature};
use super::{MiError, Params};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// A boxed future that may move between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What runs a command: async, because later commands read the database.
pub type Handler = Arc<dyn Fn(Params) -> BoxFuture<Result<Value, MiError>> + Send + Sync>;

/// One MI command.
pub struct Command {
    name: String,
    signature: Signature,
    handler: Handler,
}

impl Command {
    /// `recipes` are the accepted parameter-name lists (`&[&[]]` for none,
    /// `&[&[], &["partition"]]` for an optional one); positional arguments take the names
    /// of the list of their length, named ones must match a list exactly.
    pub fn new<F, Fut>(name: &str, recipes: &[&[&str]], handler: F) -> Command
    where
        F: Fn(Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, MiError>> + Send + 'static,
    {
        let recipes = recipes.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect();
        Command {
            name: name.to_string(),
            signature: Signature { recipes, gather: false },
            handler: Arc::new(move |p| Box::pin(handler(p))),
        }
    }

    /// A command that answers at once, without awaiting anything.
    pub fn immediate<F>(name: &str, recipes: &[&[&str]], handler: F) -> Command
    where
        F: Fn(Params) -> Result<Value, MiError> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Command::new(name, recipes, move |p| {
            let h = handler.clone();
            async move { h(p) }
        })
    }

    /// Every positional value goes, as one array, into the parameter of the command's
    /// single-name list: `get_statistics core: tm:` (OpenSIPS's array parameters).
    pub fn gather_positional(mut self) -> Command {
        self.signature.gather = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The accepted parameter-name lists (what `which {"command": X}` shows).
    pub fn recipes(&self) -> &[Vec<String>] {
        &self.signature.recipes
    }
}

/// Every command, by name.
#[derive(Default)]
pub struct Registry {
    commands: RwLock<BTreeMap<String, Arc<Command>>>,
}

impl Registry {
    /// Adds a command. A second command of the same name replaces the first (logged): two
    /// modules claiming one name is a wiring mistake that should show, not stop the proxy.
    pub fn register(&self, cmd: Command) {
        let mut map = self.commands.write().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&cmd.name) {
            tracing::warn!(command = %cmd.name, "MI command registered twice; the last one wins");
        }
        map.insert(cmd.name.clone(), Arc::new(cmd));
    }

    /// Every command name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.commands.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Command>> {
        self.commands.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Runs `method` with `params` as received. The handler runs in a task of its own, so a
    /// panic in it becomes a 500 answer instead of a dropped connection.
    ///
    /// # Errors
    /// Unknown method (-32601), params that fit none of its lists (-32602), or the
    /// command's own error.
    pub async fn call(&self, method: &str, params: Option<Value>) -> Result<Value, MiError> {
        let cmd = self.get(method).ok_or_else(|| MiError::method_not_found(method))?;
        let params = bind(&cmd.signature, Raw::from_json(params)?)?;
        let fut = (cmd.handler)(params);
        match tokio::spawn(fut).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(command = method, error = %e, "MI command failed");
                Err(MiError::internal(format!("{method} failed: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn dispatch_and_errors() {
        let r = Registry::default();
        r.register(Command::immediate("echo", &[&[], &["what"]], |p| Ok(json!(p.str("what")?))));
        r.register(Command::immediate("boom", &[&[]], |_| -> Result<Value, MiError> { panic!("handler bug") }));
        assert_eq!(r.names(), vec!["boom", "echo"]);
        assert_eq!(r.call("echo", Some(json!(["hi"]))).await, Ok(json!("hi")));
        assert_eq!(r.call("echo", Some(json!({}))).await, Ok(Value::Null));
        assert_eq!(r.call("nope", None).await.unwrap_err().code, MiError::METHOD_NOT_FOUND);
        assert_eq!(r.call("echo", Some(json!(["a", "b"]))).await.unwrap_err().code, MiError::INVALID_PARAMS);
        assert_eq!(r.call("boom", None).await.unwrap_err().code, 500);
    }
}
