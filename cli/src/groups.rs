//! `tidings groups`: store groups (Lagerkoll's `enable_for_group`).

use clap::Subcommand;
use tidings::domain::OrganizationId;

use crate::parse::parse_org;
use crate::stores::{open_store, StoreArgs};

#[derive(Subcommand)]
pub(crate) enum GroupsCommand {
    /// Create a group or replace its members.
    Set {
        #[command(flatten)]
        data: StoreArgs,
        /// The group's name.
        name: String,
        /// A member store (organization UUID); repeat for each.
        #[arg(long = "org", value_parser = parse_org, required = true)]
        orgs: Vec<OrganizationId>,
    },
    /// List the groups and their members.
    List {
        #[command(flatten)]
        data: StoreArgs,
    },
}

pub(crate) async fn groups(command: GroupsCommand) -> Result<(), String> {
    match command {
        GroupsCommand::Set { data, name, mut orgs } => {
            if name.trim().is_empty() {
                return Err("the group name must not be empty".into());
            }
            orgs.sort();
            orgs.dedup();
            open_store(&data).await?.put_store_group(&name, &orgs).await.map_err(|e| e.to_string())?;
            println!("Group {name}: {} stores", orgs.len());
            Ok(())
        }
        GroupsCommand::List { data } => {
            for group in open_store(&data).await?.list_store_groups().await.map_err(|e| e.to_string())? {
                let members: Vec<String> = group.members.iter().map(|m| m.to_string()).collect();
                println!("{}  {}", group.name, members.join(" "));
            }
            Ok(())
        }
    }
}
