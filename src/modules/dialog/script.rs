//! Rhai bindings of dialog.
