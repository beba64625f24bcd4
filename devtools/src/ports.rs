//! The local stacks' ports: `cargo xtask dev` and `cargo xtask test` use different ones so they
//! run side by side, and `GATEHOUSE_PORT_OFFSET` shifts all of them (a second checkout).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub emulator: u16,
    pub invoke: u16,
    pub gateway: u16,
    /// The local OpenID Connect provider (discovery document + JWKS) that jwks-sync reads.
    pub oidc: u16,
}

impl Ports {
    /// `cargo xtask dev`.
    pub const DEV: Ports = Ports {
        emulator: 4566,
        invoke: 9000,
        gateway: 3000,
        oidc: 3100,
    };
    /// `cargo xtask test`: different ports, so tests run beside a dev stack.
    pub const TEST: Ports = Ports {
        emulator: 4577,
        invoke: 9010,
        gateway: 3010,
        oidc: 3110,
    };

    /// These ports shifted by `GATEHOUSE_PORT_OFFSET` (default 0), so two checkouts can run
    /// their stacks side by side.
    pub fn offset_from_env(self) -> Ports {
        let off: u16 = std::env::var("GATEHOUSE_PORT_OFFSET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ports {
            emulator: self.emulator + off,
            invoke: self.invoke + off,
            gateway: self.gateway + off,
            oidc: self.oidc + off,
        }
    }

    /// The issuer of the stack's local OIDC provider, which its tokens carry.
    pub fn issuer(self) -> String {
        format!("http://127.0.0.1:{}", self.oidc)
    }
}
