pub mod command;
pub mod config;
pub mod engine;
pub mod protocol;
