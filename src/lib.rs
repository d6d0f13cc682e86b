pub mod config;
pub mod message;
