//! `ota-sign key public`: the public key of any private key reference, so a key that lives in
//! an HSM or a KMS can be trusted by devices and repositories without ever being exported.

use crate::cli::{KeyCommand, KeyPublicArgs};
use anyhow::{Context, Result};

pub fn run(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Public(args) => public(args),
    }
}

fn public(args: KeyPublicArgs) -> Result<()> {
    let key = crate::keys::load_private_key(&args.key)?;
    let public = key.verifying_key();
    let pem = public.to_pem();
    if let Some(out) = &args.out {
        std::fs::write(out, &pem).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        let report = serde_json::json!({
            "public_key_pem": pem, "key_id": public.key_id().to_string(),
            "algorithm": public.algorithm().to_string(), "file": args.out,
        });
        println!("{report}");
    } else if let Some(out) = &args.out {
        println!(
            "wrote {} ({} key id {})",
            out.display(),
            public.algorithm(),
            public.key_id()
        );
    } else {
        print!("{pem}");
    }
    Ok(())
}
