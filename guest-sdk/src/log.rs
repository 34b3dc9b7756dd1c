//! Logging to the host's log, tagged with the plugin's name.

use crate::host::{LogLevel, log};

pub fn debug(msg: &str) {
    log(LogLevel::Debug, msg)
}
pub fn info(msg: &str) {
    log(LogLevel::Info, msg)
}
pub fn warn(msg: &str) {
    log(LogLevel::Warn, msg)
}
pub fn error(msg: &str) {
    log(LogLevel::Error, msg)
}
