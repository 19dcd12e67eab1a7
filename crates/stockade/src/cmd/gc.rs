//! `stockade gc`: removes what jobs whose supervisor was killed left behind (cgroups, job
//! directories). `stockade run` does the same before each job.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Where job state lives (default /var/lib/stockade as root).
    #[arg(long, value_name = "DIR", hide = true)]
    pub state_dir: Option<PathBuf>,
}

pub fn main(a: Args) -> anyhow::Result<i32> {
    let root = a.state_dir.unwrap_or_else(stockade_sandbox::state::default_state_root);
    let rep = stockade_sandbox::state::gc(&root);
    for j in &rep.jobs_removed {
        println!("removed job {j}");
    }
    for c in &rep.cgroups_removed {
        println!("removed cgroup {c}");
    }
    for e in &rep.errors {
        eprintln!("stockade: error: gc: {e}");
    }
    if rep.jobs_removed.is_empty() && rep.cgroups_removed.is_empty() && rep.errors.is_empty() {
        println!("nothing to clean");
    }
    Ok(if rep.errors.is_empty() { 0 } else { 1 })
}
