//! `stockade policy`: the embedded default policy (the documented schema) and a validator.

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the embedded default policy, with a comment on every key.
    Default,
    /// Validate a policy file; prints its digest.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

pub fn main(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Default => {
            print!("{}", stockade_policy::DEFAULT_TOML);
            Ok(0)
        }
        Command::Check { file } => {
            let p = stockade_policy::load(&file)?;
            println!("{}: ok ({})", file.display(), p.digest());
            Ok(0)
        }
    }
}
