//! The virtual IP: added and removed through netlink, announced with gratuitous ARP
//! (IPv4) or an unsolicited neighbour advertisement (IPv6).
