//! `stockade doctor`: what this host can enforce, and why, before the first job runs.

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<i32> {
    let caps = stockade_sandbox::doctor::probe();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&caps)?);
        return Ok(0);
    }
    let width = caps.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &caps {
        println!(
            "{:<width$}  {:<3}  {}",
            c.name,
            if c.available { "yes" } else { "no" },
            c.detail
        );
    }
    Ok(0)
}
