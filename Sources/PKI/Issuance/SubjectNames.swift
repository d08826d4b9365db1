import Foundation

/// The names a certificate must be valid for: its common name plus DNS and IP subject alternative names.
///
/// This is the "desired identity" a member compares its serving certificate against on every start. Names are
/// normalised (DNS lower-cased, IPs canonical, duplicates removed, sorted) so that comparing two sets is a plain `==`
/// and an unchanged configuration never triggers a needless re-issue.
public struct SubjectNames: Hashable, Sendable, Codable {
    public var commonName: String
    public private(set) var dnsNames: [String]
    public private(set) var ipAddresses: [IPAddress]

    public init(commonName: String, dnsNames: [String] = [], ipAddresses: [IPAddress] = []) {
        self.commonName = commonName
        self.dnsNames = Array(Set(dnsNames.map { $0.lowercased() }.filter { !$0.isEmpty })).sorted()
        self.ipAddresses = Array(Set(ipAddresses)).sorted()
    }

    /// Builds names from free-form hosts, sorting each into DNS or IP (brackets around IPv6 literals are fine).
    public init(commonName: String, hosts: [String]) {
        var dns: [String] = []
        var ips: [IPAddress] = []
        for host in hosts {
            if let ip = IPAddress(host) { ips.append(ip) } else { dns.append(host) }
        }
        self.init(commonName: commonName, dnsNames: dns, ipAddresses: ips)
    }

    /// The identity a member serves: the hosts of its advertise URLs, its hostname, and the loopback names every local
    /// `etcdctl` uses (`localhost`, `127.0.0.1`, `::1`), so a default client config always works on the node itself.
    public static func member(
        name: String,
        advertiseURLs: [String],
        hostname: String? = nil,
        includeLoopback: Bool = true
    ) -> SubjectNames {
        var hosts = advertiseURLs.compactMap(host(ofURL:))
        if let hostname, !hostname.isEmpty { hosts.append(hostname) }
        if includeLoopback { hosts += ["localhost", "127.0.0.1", "::1"] }
        return SubjectNames(commonName: name, hosts: hosts)
    }

    /// Every SAN as text, DNS names first, in the form `openssl x509 -text` shows them.
    public var allNames: [String] { dnsNames + ipAddresses.map(\.description) }

    /// Whether `host` (DNS name or IP literal) is covered by these names, honouring single-label `*.` wildcards.
    public func covers(host: String) -> Bool {
        if let ip = IPAddress(host) { return ipAddresses.contains(ip) }
        let wanted = host.lowercased()
        return dnsNames.contains { name in
            if name == wanted { return true }
            guard name.hasPrefix("*."), let dot = wanted.firstIndex(of: ".") else { return false }
            return wanted[dot...] == name.dropFirst()
        }
    }

    /// The host part of a URL such as `https://10.0.0.1:2380` or `https://[fd00::1]:2379`; nil for garbage.
    public static func host(ofURL text: String) -> String? {
        if let components = URLComponents(string: text), let host = components.host, !host.isEmpty {
            return host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        }
        return nil
    }
}
