//! The Redis twin of the ledger as one Redis Functions library (`lua/lib.lua` and one file per
//! operation), loaded once per server with `FUNCTION LOAD` and called with one `FCALL` per
//! operation.
//!
//! Function names are global in Redis, so the library's name, and every function's, carries
//! its version: `quota_v3_<digest of the Lua>`. Two sidecar builds with different Lua (a rolling
//! deploy) each load and call their own library on the same Redis; one build always calls the
//! same functions.

use std::sync::LazyLock;

use ::redis::{Cmd, ToRedisArgs};

/// The layout generation of the library's names (`quota_<LAYOUT>_…`); the digest of the Lua
/// follows it, so any change to the Lua is a new library.
const LAYOUT: &str = "v3";

/// One ledger operation of the library, named like the Rust operation it is the twin of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Reserve,
    Settle,
    Release,
    Extend,
    Balance,
    Account,
    SetPlan,
    GrantCredits,
    RevokeCredits,
    ExpireDue,
    Quote,
    ReserveBatch,
    Refund,
}

impl Function {
    /// The operation's name: its function is `<library>_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Reserve => "reserve",
            Function::Settle => "settle",
            Function::Release => "release",
            Function::Extend => "extend",
            Function::Balance => "balance",
            Function::Account => "account",
            Function::SetPlan => "set_plan",
            Function::GrantCredits => "grant_credits",
            Function::RevokeCredits => "revoke_credits",
            Function::ExpireDue => "expire_due",
            Function::Quote => "quote",
            Function::ReserveBatch => "reserve_batch",
            Function::Refund => "refund",
        }
    }

    /// Whether the function may write (only writes wait for `--durability`). A read-only one is
    /// registered `no-writes` and called with `FCALL_RO`.
    pub fn writes(self) -> bool {
        !matches!(self, Function::Quote)
    }
}

/// Every operation's Lua, in the order the library defines them (after `lib.lua`).
const OPERATIONS: [&str; 13] = [
    include_str!("lua/reserve.lua"),
    include_str!("lua/settle.lua"),
    include_str!("lua/release.lua"),
    include_str!("lua/extend.lua"),
    include_str!("lua/balance.lua"),
    include_str!("lua/account.lua"),
    include_str!("lua/set_plan.lua"),
    include_str!("lua/grant_credits.lua"),
    include_str!("lua/revoke_credits.lua"),
    include_str!("lua/expire_due.lua"),
    include_str!("lua/quote.lua"),
    include_str!("lua/reserve_batch.lua"),
    include_str!("lua/refund.lua"),
];

/// A Functions library: its name and the source `FUNCTION LOAD` takes.
#[derive(Debug, Clone)]
pub struct Library {
    name: String,
    source: String,
}

static CURRENT: LazyLock<Library> = LazyLock::new(|| {
    let body = body();
    let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Library::named(&format!("quota_{LAYOUT}_{hex}"))
});

/// `lib.lua` and the operations, without the header that names the library.
fn body() -> String {
    let mut body = String::from(include_str!("lua/lib.lua"));
    for op in OPERATIONS {
        body.push('\n');
        body.push_str(op);
    }
    body
}

impl Library {
    /// The library of this build.
    pub fn current() -> &'static Library {
        &CURRENT
    }

    /// This build's Lua under another library name (tests run two versions side by side; a
    /// name is letters, digits and underscores).
    pub fn named(name: &str) -> Library {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a library name is letters, digits and underscores: {name:?}"
        );
        Library {
            name: name.to_string(),
            source: format!("#!lua name={name}\nlocal LIBRARY = '{name}'\n{}", body()),
        }
    }

    /// The library's name, as `FUNCTION LIST` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source `FUNCTION LOAD` takes (header included).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The Redis name of `function` in this library.
    pub fn function_name(&self, function: Function) -> String {
        format!("{}_{}", self.name, function.name())
    }

    /// `FUNCTION LOAD REPLACE`: loads (or reloads the same) library; on a Cluster, on every
    /// primary.
    pub fn load_cmd(&self) -> Cmd {
        let mut cmd = ::redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.source);
        cmd
    }
}

/// One `FCALL` being built: the keys and the arguments, in the order the function reads them.
pub struct Call {
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    pub fn new() -> Call {
        Call {
            keys: Vec::with_capacity(6),
            args: Vec::with_capacity(16),
        }
    }

    /// Declares one more key.
    pub fn key(&mut self, key: impl ToRedisArgs) -> &mut Call {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds one more argument.
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Call {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// The `FCALL` (or `FCALL_RO`) of `function` in `library`.
    pub fn cmd(&self, library: &Library, function: Function) -> Cmd {
        let mut cmd = ::redis::cmd(if function.writes() {
            "FCALL"
        } else {
            "FCALL_RO"
        });
        cmd.arg(library.function_name(function))
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

impl Default for Call {
    fn default() -> Call {
        Call::new()
    }
}

/// Whether Redis answered that it has no such function: a server restarted without
/// persistence, `FUNCTION FLUSH`, a Cluster node that joined without the library. Redis
/// answers this with the generic `ERR` code, so the server's fixed detail tells it apart.
/// A pipeline's error counts when any of its commands got this answer.
pub fn is_function_missing(e: &::redis::RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, e)| e.code() == "ERR" && e.details() == Some("Function not found"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_version() {
        let lib = Library::current();
        assert!(lib.name().starts_with("quota_v3_"), "{}", lib.name());
        assert_eq!(lib.name().len(), "quota_v3_".len() + 12);
        assert!(lib
            .source()
            .starts_with(&format!("#!lua name={}\n", lib.name())));
        assert_eq!(
            lib.function_name(Function::GrantCredits),
            format!("{}_grant_credits", lib.name())
        );
        // Every operation registers itself under its name.
        for f in [
            Function::Reserve,
            Function::Settle,
            Function::Release,
            Function::Extend,
            Function::Balance,
            Function::Account,
            Function::SetPlan,
            Function::GrantCredits,
            Function::RevokeCredits,
            Function::ExpireDue,
            Function::Quote,
            Function::ReserveBatch,
            Function::Refund,
        ] {
            assert!(
                lib.source().contains(&format!("register('{}', ", f.name())),
                "{f:?}"
            );
        }
        assert_eq!(
            Library::named("other").function_name(Function::Quote),
            "other_quote"
        );
    }
}
