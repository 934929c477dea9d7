//! A free loopback port, for a listener that another program opens later
//! (tor's `SocksPort`, a lab node's admin or gossip port).

use crate::err::{Error, Result};
use std::net::{Ipv4Addr, SocketAddr};

/// Which socket kind the port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP listener.
    Tcp,
    /// A UDP socket.
    Udp,
}

/// A port on 127.0.0.1 that was free a moment ago (the OS chose it).
pub fn free_port(proto: Proto) -> Result<u16> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let bound = match proto {
        Proto::Tcp => std::net::TcpListener::bind(any).and_then(|l| l.local_addr()),
        Proto::Udp => std::net::UdpSocket::bind(any).and_then(|s| s.local_addr()),
    };
    bound
        .map(|a| a.port())
        .map_err(|source| Error::FreePort { proto, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable() {
        let p = free_port(Proto::Tcp).unwrap();
        std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
        let p = free_port(Proto::Udp).unwrap();
        std::net::UdpSocket::bind(("127.0.0.1", p)).unwrap();
    }
}
