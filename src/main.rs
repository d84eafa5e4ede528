//! `portcullis serve | check-config | explain | hash-api-key | --version`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{self, Config, ConfigError, Env, ENV_CONFIG};
use portcullis::verify::{apikey, warrant};
use portcullis::{explain, server, telemetry};

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
    /// Explain one request's decision offline: the real decision path, step by
    /// step. Exit 0 allowed, 1 denied, 2 usage or config error.
    Explain(Box<ExplainArgs>),
    /// Read an API key on stdin and print its entry for the `api_keys.file` (its hash, never the key).
    HashApiKey {
        /// The user the key authenticates as.
        #[arg(long)]
        user: String,
    },
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[arg(long, short, env = ENV_CONFIG)]
    config: PathBuf,
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target as Envoy sends it (query included).
    #[arg(long, required_unless_present_any = ["check_request", "curl"])]
    path: Option<String>,
    #[arg(long, default_value = "")]
    host: String,
    /// `name: value`; repeat for more headers.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body (when Envoy sends bodies, `with_request_body`).
    #[arg(long, default_value = "")]
    body: String,
    /// `key=value` of the route's `context_extensions` (`portcullis_policy=NAME`).
    #[arg(long = "context-extension")]
    context_extensions: Vec<String>,
    /// The mTLS peer's principal as Envoy reports it (`spiffe://…`).
    #[arg(long, default_value = "")]
    principal: String,
    /// A CheckRequest as JSON (instead of --method/--path/--header).
    #[arg(long, conflicts_with_all = ["path", "headers", "context_extensions", "body", "principal"])]
    check_request: Option<PathBuf>,
    /// A `curl` command line (one argument): its URL, -X, -H, -d, -b, -u.
    #[arg(long, conflicts_with_all = ["path", "headers", "body", "host", "check_request"])]
    curl: Option<String>,
    /// JWKS from a file instead of the issuer: `FILE` (the only provider) or
    /// `ISSUER=FILE`; repeatable. No issuer is called then.
    #[arg(long = "jwks-file")]
    jwks_files: Vec<String>,
    /// Decide as of this time (Unix seconds), e.g. the time of an incident.
    #[arg(long)]
    at: Option<u64>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `explain`'s usage and config errors (clap's own exit with 2 too).
const EXPLAIN_USAGE: u8 = 2;

fn run_explain(args: ExplainArgs) -> ExitCode {
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("explain: {e}");
        ExitCode::from(EXPLAIN_USAGE)
    };
    let cfg = match load(&args.config) {
        Ok(c) => c,
        Err(e) => return usage(&format_args!("{}: {e}", args.config.display())),
    };
    let req = match &args.check_request {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| explain::check_request_from_json(&t))
        {
            Ok(r) => r,
            Err(e) => return usage(&format_args!("{}: {e}", path.display())),
        },
        None if args.curl.is_some() => {
            let exts: Result<Vec<_>, _> = args
                .context_extensions
                .iter()
                .map(|x| explain::parse_extension(x))
                .collect();
            match (args.curl.as_deref().map(explain::parse_curl), exts) {
                (Some(Ok(mut input)), Ok(x)) => {
                    input.context_extensions = x;
                    input.principal = args.principal;
                    input.to_check_request()
                }
                (Some(Err(e)), _) | (_, Err(e)) => return usage(&e),
                (None, _) => return usage(&"--curl: missing"),
            }
        }
        None => {
            let headers: Result<Vec<_>, _> = args.headers.iter().map(|h| explain::parse_header(h)).collect();
            let exts: Result<Vec<_>, _> = args
                .context_extensions
                .iter()
                .map(|x| explain::parse_extension(x))
                .collect();
            let (headers, context_extensions) = match (headers, exts) {
                (Ok(h), Ok(x)) => (h, x),
                (Err(e), _) | (_, Err(e)) => return usage(&e),
            };
            explain::Input {
                method: args.method,
                path: args.path.unwrap_or_default(),
                host: args.host,
                headers,
                body: args.body,
                context_extensions,
                principal: args.principal,
            }
            .to_check_request()
        }
    };
    let opts = explain::Options {
        at: args.at,
        jwks_files: args.jwks_files.iter().map(|a| explain::parse_jwks_arg(a)).collect(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return usage(&format_args!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(explain::explain(cfg, &req, &opts)) {
        Ok(e) => {
            if args.json {
                println!("{}", explain::to_json(&e));
            } else {
                print!("{}", explain::to_text(&e));
            }
            if e.decision == "allow" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => usage(&e),
    }
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
        Command::Explain(args) => run_explain(*args),
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
