//! WIP

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_a: Args, _v: u8) -> anyhow::Result<i32> {
    anyhow::bail!("not built yet")
}
