pub mod pb {
    tonic::include_proto!("quota.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("quota_descriptor");
}

pub mod api;
pub mod billing;
pub mod catalog_reload;
pub mod client;
pub mod clock;
pub mod config;
pub mod events;
pub mod ledger;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod text_table;
pub mod tls;
