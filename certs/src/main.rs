//! `certs`: issues more identities from a data dir's CA.
//!
//! `certs kubeconfig --pki-dir DIR --user NAME [--group G]... --server URL --out FILE`
//! `certs node --pki-dir DIR --node-name NAME [--address IP] --server URL --out-dir DIR`

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Issue certificates and kubeconfigs from the cluster CA")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a kubeconfig with a new client certificate (CN = user, O = groups).
    Kubeconfig {
        /// Directory holding ca.crt and ca.key (the apiserver's data dir /pki).
        #[arg(long)]
        pki_dir: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a node's identity into a folder: `kubelet.kubeconfig` (system:node:NAME, group
    /// system:nodes), the serving certificate `kubelet.crt`/`kubelet.key`, and `ca.crt`.
    Node {
        #[arg(long)]
        pki_dir: PathBuf,
        #[arg(long)]
        node_name: String,
        /// The address the node's streaming server is reached at.
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Kubeconfig {
            pki_dir,
            user,
            groups,
            server,
            out,
        } => {
            let pki = certs::Pki::load_or_create(&pki_dir)?;
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let client = pki.issue_client(&user, &groups)?;
            let config = certs::kubeconfig(&server, pki.ca_cert_pem(), &user, &client);
            certs::write_private(&out, config.as_bytes())?;
            println!("wrote {}", out.display());
        }
        Command::Node {
            pki_dir,
            node_name,
            address,
            server,
            out_dir,
        } => {
            let pki = certs::Pki::load_or_create(&pki_dir)?;
            let identity = pki.write_node_identity(&out_dir, &node_name, &address, &server)?;
            println!("wrote {}", identity.kubeconfig.display());
        }
    }
    Ok(())
}
