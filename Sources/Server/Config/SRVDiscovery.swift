import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A DNS SRV record.
public struct SRVRecord: Sendable, Equatable {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    /// The target host name, with its trailing dot.
    public var target: String

    public init(priority: UInt16 = 0, weight: UInt16 = 0, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }
}

/// Answers `--discovery-srv`'s questions; tests give their own.
public protocol SRVResolver: Sendable {
    /// The SRV records of `name` (e.g. `_etcd-server._tcp.example.com`); empty when there are none.
    func lookupSRV(_ name: String) throws -> [SRVRecord]
    /// The addresses `host:port` resolves to, as `ip:port` strings (IPv6 in brackets).
    func resolve(host: String, port: Int) throws -> [String]
}

extension SRVResolver {
    public func resolve(host: String, port: Int) throws -> [String] {
        try SystemSRVResolver.addresses(host: host, port: port)
    }
}

/// etcd's DNS discovery (`--discovery-srv`, `--discovery-srv-name`): the initial cluster from the SRV records of
/// `_etcd-server-ssl._tcp.<domain>` (https peers) and `_etcd-server._tcp.<domain>` (http peers), as etcd's
/// `srv.GetCluster` builds it: the record that resolves to one of this member's advertised peer URLs takes this
/// member's name, the others are named 0, 1, ... (member IDs come from peer URLs, not names).
public enum SRVDiscovery {
    public static func initialCluster(
        domain: String, serviceName: String?, name: String, advertisePeerURLs: [String], resolver: any SRVResolver
    ) throws -> [String] {
        let suffix = serviceName.map { $0.isEmpty ? "" : "-" + $0 } ?? ""
        var own: [String: String] = [:]  // resolved address → scheme
        for text in advertisePeerURLs {
            let url = try ListenURL(text)
            for address in try resolver.resolve(host: url.host, port: url.port) { own[address] = url.scheme }
        }
        var parts: [String] = []
        var errors: [String] = []
        var temporaryName = 0
        for (service, scheme) in [("etcd-server-ssl" + suffix, "https"), ("etcd-server" + suffix, "http")] {
            let query = "_\(service)._tcp.\(domain)"
            let records: [SRVRecord]
            do {
                records = try resolver.lookupSRV(query)
            } catch {
                errors.append("error querying DNS SRV records for _\(service) \(error)")
                continue
            }
            for record in records {
                let host = record.target.hasSuffix(".") ? String(record.target.dropLast()) : record.target
                let urlHost = host.contains(":") ? "[\(host)]" : host
                let addresses = (try? resolver.resolve(host: host, port: Int(record.port))) ?? []
                let mine = addresses.compactMap { own[$0] }.first
                if let mine, mine != scheme {
                    errors.append(
                        "bootstrap at \(scheme)://\(urlHost):\(record.port) from DNS for \(service) has scheme "
                            + "mismatch with expected peer \(mine)")
                    continue
                }
                let member: String
                if mine != nil {
                    member = name
                } else {
                    member = "\(temporaryName)"
                    temporaryName += 1
                }
                parts.append("\(member)=\(scheme)://\(urlHost):\(record.port)")
            }
        }
        if parts.isEmpty {
            throw ConfigError(
                "--discovery-srv \(domain): no SRV records found for _etcd-server-ssl\(suffix)._tcp.\(domain) or "
                    + "_etcd-server\(suffix)._tcp.\(domain)"
                    + (errors.isEmpty ? "" : " (\(errors.joined(separator: "; ")))"))
        }
        return parts
    }
}

/// Looks SRV records up with a small DNS client over UDP (no libresolv, no dig): the name servers of
/// `/etc/resolv.conf`, or the one `QUORUM_DNS_SERVER` names (`ip` or `ip:port`, for a resolver other than the
/// system's). Host names resolve through `getaddrinfo`, as every other name Quorum dials.
public struct SystemSRVResolver: SRVResolver {
    public var servers: [(host: String, port: UInt16)]
    public var timeout: Duration = .seconds(2)

    public init(servers: [(host: String, port: UInt16)]? = nil) {
        if let servers {
            self.servers = servers
        } else if let override = ProcessInfo.processInfo.environment["QUORUM_DNS_SERVER"], !override.isEmpty {
            self.servers = [Self.hostPort(override)]
        } else {
            let text = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
            self.servers = text.split(separator: "\n").compactMap { line in
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard words.count >= 2, words[0] == "nameserver" else { return nil }
                return (String(words[1]), 53)
            }
            if self.servers.isEmpty { self.servers = [("127.0.0.1", 53)] }
        }
    }

    static func hostPort(_ text: String) -> (String, UInt16) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            return (host, rest.hasPrefix(":") ? UInt16(rest.dropFirst()) ?? 53 : 53)
        }
        let parts = text.split(separator: ":")
        if parts.count == 2, let port = UInt16(parts[1]) { return (String(parts[0]), port) }
        return (text, 53)
    }

    public func lookupSRV(_ name: String) throws -> [SRVRecord] {
        var lastError: Error = ConfigError("no DNS server")
        for server in servers {
            do {
                return try DNSWire.querySRV(name, server: server.host, port: server.port, timeout: timeout)
            } catch let error as DNSWire.NameError {
                throw error
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    public func resolve(host: String, port: Int) throws -> [String] {
        try Self.addresses(host: host, port: port)
    }

    /// `getaddrinfo` of a host (IP literals included) as `ip:port` strings.
    static func addresses(host: String, port: Int) throws -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, "\(port)", &hints, &result)
        guard rc == 0, let first = result else {
            throw ConfigError("lookup \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var out: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(
                entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0,
                NI_NUMERICHOST) == 0
            {
                let ip = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let text = ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
                if !out.contains(text) { out.append(text) }
            }
            cursor = entry.pointee.ai_next
        }
        return out
    }
}

/// DNS messages as far as an SRV query needs them (RFC 1035, RFC 2782).
enum DNSWire {
    /// The name does not exist (NXDOMAIN): no other server will say otherwise.
    struct NameError: Error, CustomStringConvertible {
        var name: String
        var description: String { "lookup \(name): no such host" }
    }

    struct FormatError: Error, CustomStringConvertible {
        var description: String
    }

    static let typeSRV: UInt16 = 33

    static func encodeQuery(id: UInt16, name: String, type: UInt16) -> [UInt8] {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        out += encodeName(name)
        out += [UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        return out
    }

    static func encodeName(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in name.split(separator: ".") where !label.isEmpty {
            let bytes = Array(label.utf8.prefix(63))
            out.append(UInt8(bytes.count))
            out += bytes
        }
        out.append(0)
        return out
    }

    /// Reads a possibly compressed name at `offset`; returns it and the offset after it.
    static func readName(_ message: [UInt8], at offset: Int) throws -> (String, Int) {
        var labels: [String] = []
        var position = offset
        var end: Int?
        var jumps = 0
        while true {
            guard position < message.count else { throw FormatError(description: "name runs past the message") }
            let length = Int(message[position])
            if length == 0 {
                position += 1
                break
            }
            if length & 0xc0 == 0xc0 {
                guard position + 1 < message.count, jumps < 32 else { throw FormatError(description: "bad pointer") }
                if end == nil { end = position + 2 }
                position = (length & 0x3f) << 8 | Int(message[position + 1])
                jumps += 1
                continue
            }
            guard position + 1 + length <= message.count else { throw FormatError(description: "bad label") }
            labels.append(String(decoding: message[(position + 1)..<(position + 1 + length)], as: UTF8.self))
            position += 1 + length
        }
        return (labels.joined(separator: ".") + ".", end ?? position)
    }

    static func u16(_ m: [UInt8], _ i: Int) -> UInt16 { UInt16(m[i]) << 8 | UInt16(m[i + 1]) }

    /// The SRV answers of a response to query `id`.
    static func parseSRVResponse(_ message: [UInt8], id: UInt16, name: String) throws -> [SRVRecord] {
        guard message.count >= 12, u16(message, 0) == id else { throw FormatError(description: "not our answer") }
        let rcode = message[3] & 0x0f
        if rcode == 3 { throw NameError(name: name) }
        guard rcode == 0 else { throw FormatError(description: "DNS server answered rcode \(rcode)") }
        let questions = Int(u16(message, 4))
        let answers = Int(u16(message, 6))
        var offset = 12
        for _ in 0..<questions {
            offset = try readName(message, at: offset).1 + 4
        }
        var records: [SRVRecord] = []
        for _ in 0..<answers {
            offset = try readName(message, at: offset).1
            guard offset + 10 <= message.count else { throw FormatError(description: "truncated answer") }
            let type = u16(message, offset)
            let length = Int(u16(message, offset + 8))
            let data = offset + 10
            guard data + length <= message.count else { throw FormatError(description: "truncated record") }
            if type == typeSRV, length >= 7 {
                let target = try readName(message, at: data + 6).0
                records.append(
                    SRVRecord(
                        priority: u16(message, data), weight: u16(message, data + 2), port: u16(message, data + 4),
                        target: target))
            }
            offset = data + length
        }
        return records.sorted { ($0.priority, UInt16.max - $0.weight) < ($1.priority, UInt16.max - $1.weight) }
    }

    /// One query over UDP, with `timeout` for the answer.
    static func querySRV(_ name: String, server: String, port: UInt16, timeout: Duration) throws -> [SRVRecord] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_NUMERICHOST
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(server, "\(port)", &hints, &result) == 0, let address = result else {
            throw FormatError(description: "bad DNS server address \(server)")
        }
        defer { freeaddrinfo(address) }
        let fd = socket(address.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FormatError(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let id = UInt16.random(in: 0...UInt16.max)
        let query = encodeQuery(id: id, name: name, type: typeSRV)
        guard connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0,
            send(fd, query, query.count, 0) == query.count
        else {
            throw FormatError(description: "DNS server \(server):\(port): \(String(cString: strerror(errno)))")
        }
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65_535)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw FormatError(description: "DNS server \(server):\(port): timed out") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let millis = Int32(
                max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&poller, 1, millis) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else {
                throw FormatError(description: "DNS server \(server):\(port): \(String(cString: strerror(errno)))")
            }
            let message = Array(buffer[0..<n])
            if message.count >= 2 && u16(message, 0) != id { continue }  // a stray answer
            return try parseSRVResponse(message, id: id, name: name)
        }
    }
}
