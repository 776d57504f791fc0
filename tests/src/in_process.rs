//! The updaters in this process: the command line's (`crossdeploy_cli::deploy`), which the
//! worker in the tests uses as well.

pub use crossdeploy_cli::deploy::{InProcessUpdaters as InProcessUpdater, ECS_UPDATER, LAMBDA_UPDATER};
