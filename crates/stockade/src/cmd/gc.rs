//! WIP

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not built yet")
}
