//! `portcullis serve | check-config | hash-api-key | --version`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{self, Config, ConfigError, Env, ENV_CONFIG};
use portcullis::verify::{apikey, warrant};
use portcullis::{server, telemetry};

/// sysexits EX_USAGE: the configuration is wrong, retrying will not help.
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "External authorization for Envoy and Istio (ext_authz v3 gRPC)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ext_authz on `listen` and admin HTTP on `admin_listen`.
    Serve {
        #[arg(long, short, env = ENV_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or print every problem with its field path and exit 64.
    CheckConfig {
        #[arg(long, short, env = ENV_CONFIG)]
        config: PathBuf,
    },
    /// Read an API key on stdin and print its entry for the `api_keys.file` (its hash, never the key).
    HashApiKey {
        /// The user the key authenticates as.
        #[arg(long)]
        user: String,
    },
}

/// The config file, the secrets it references and the Tenuo files it names:
/// everything that must be right before the first request.
fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = config::read(path, &Env)?;
    warrant::check_files(&config)?;
    apikey::check_file(&config)?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(EX_USAGE)
            }
        },
        Command::HashApiKey { user } => {
            let mut key = String::new();
            let entry = std::io::stdin()
                .read_line(&mut key)
                .map_err(|e| e.to_string())
                .and_then(|_| apikey::file_entry(key.trim(), &user).map_err(|e| e.to_string()));
            match entry {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EX_USAGE)
                }
            }
        }
        Command::Serve { config } => {
            telemetry::init_logging();
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(event = "config_invalid", path = %config.display(), error = %e);
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(EX_USAGE);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(event = "serve_failed", error = %e);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
