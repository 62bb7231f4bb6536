//! Generates the gRPC code and the reflection descriptor from `proto/` with a pure-Rust
//! protobuf compiler, so building needs no system `protoc`.

use std::path::PathBuf;

const PROTOS: [&str; 3] = [
    "proto/quota/v1/quota.proto",
    "proto/quota/v1/admin.proto",
    "proto/quota/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("quota_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
