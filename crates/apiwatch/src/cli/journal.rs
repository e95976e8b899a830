//! Journal commands: `verify`, `prove`, `verify-proof`, `keys`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use apiwatch_journal::{Checkpoint, InclusionProof, VerifyOptions};
use clap::Args;

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
    /// Checkpoints kept elsewhere (a witness file, JSON lines) that the journal must match.
    #[arg(long)]
    checkpoint: Vec<PathBuf>,
    /// Public key to trust instead of the one in the data directory ("ed25519:..." or a file).
    #[arg(long)]
    public_key: Option<String>,
}

/// Flags of `prove`.
#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The event's `event.id`.
    event_id: String,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
    /// Write the proof to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Flags of `verify-proof`.
#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// A proof written by `apiwatch prove`.
    file: PathBuf,
    /// The journal's public key ("ed25519:..." as printed by `apiwatch keys`, or a file holding it).
    #[arg(long, conflicts_with = "data")]
    public_key: Option<String>,
    /// Read the public key from this data directory instead.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Flags of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // Nothing to check is a usage error (exit 2), not a failed check (exit 1).
    if !args.data.join("journal").is_dir() {
        anyhow::bail!(
            "no journal in {} (is this an apiwatch data directory? see --data)",
            args.data.display()
        );
    }
    let mut options = VerifyOptions::default();
    if let Some(key) = &args.public_key {
        options.public_key = Some(read_public_key(key)?);
    }
    for file in &args.checkpoint {
        let checkpoints = Checkpoint::read_file(file)
            .with_context(|| format!("failed to read checkpoints from {}", file.display()))?;
        options.extra_checkpoints.extend(checkpoints);
    }
    match apiwatch_journal::verify(&args.data, &options) {
        Ok(report) => {
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("FAILED: {failure}");
            Ok(ExitCode::from(super::EXIT_CHECK_FAILED))
        }
    }
}

pub fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    let needle = format!("\"event.id\":\"{}\"", args.event_id);
    let found = apiwatch_journal::find_record(&args.data, |_, record| {
        record
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    })
    .context("failed to read the journal")?;
    let Some((index, _)) = found else {
        anyhow::bail!(
            "no event with id {} in {}",
            args.event_id,
            args.data.display()
        );
    };
    let proof = apiwatch_journal::prove(&args.data, index).context("failed to build the proof")?;
    let json = serde_json::to_string_pretty(&proof)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, json + "\n")
                .with_context(|| format!("failed to write {}", path.display()))?;
            eprintln!(
                "proof of record {index} against tree size {} written to {}",
                proof.tree_size,
                path.display()
            );
        }
        None => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify_proof(args: VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("failed to read {}", args.file.display()))?;
    let proof: InclusionProof = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a proof written by apiwatch prove",
            args.file.display()
        )
    })?;
    let key = match (&args.public_key, &args.data) {
        (Some(key), _) => read_public_key(key)?,
        (None, Some(data)) => apiwatch_journal::load_verifying_key(data)?,
        (None, None) => anyhow::bail!(
            "give the journal's public key with --public-key (see apiwatch keys) or --data"
        ),
    };
    match apiwatch_journal::verify_inclusion_proof(&proof, &key) {
        Ok(()) => {
            println!(
                "ok: record {} is included in the tree of size {} signed at {}",
                proof.leaf_index, proof.tree_size, proof.checkpoint.timestamp
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("FAILED: {err}");
            Ok(ExitCode::from(super::EXIT_CHECK_FAILED))
        }
    }
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let key = apiwatch_journal::load_verifying_key(&args.data).with_context(|| {
        format!(
            "no journal key in {} yet (apiwatch serve creates it on first start)",
            args.data.display()
        )
    })?;
    println!("public key: {}", apiwatch_journal::public_key_string(&key));
    println!("key id:     {}", apiwatch_journal::key_id(&key));
    println!(
        "file:       {}",
        args.data.join("keys").join("journal.pub").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A public key given inline (`ed25519:...`) or as a file holding it.
fn read_public_key(value: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let text = if Path::new(value).is_file() {
        std::fs::read_to_string(value).with_context(|| format!("failed to read {value}"))?
    } else {
        value.to_owned()
    };
    apiwatch_journal::parse_public_key(text.trim())
        .with_context(|| format!("invalid public key {value:?}"))
}
