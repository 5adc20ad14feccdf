//! The one TLS crypto provider: ring, installed once for rustls (slack-morphism's hyper client,
//! reqwest, the Socket Mode websocket). reqwest is built without a provider of its own, so this
//! runs before any client is built.

/// Installs ring as the process's rustls provider (a second call does nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
