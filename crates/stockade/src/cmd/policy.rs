//! WIP

#[derive(clap::Subcommand)]
pub enum Command {
    Default,
}

pub fn main(_c: Command) -> anyhow::Result<i32> {
    anyhow::bail!("not built yet")
}
