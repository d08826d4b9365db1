import Foundation

/// A refusal of `quorum grpc-proxy start`, worded as etcd's cobra command words it.
package struct GRPCProxyError: Error, CustomStringConvertible, Sendable {
    package let description: String
    /// etcd prints its usage after flag errors (cobra), and not after checks made once started.
    package let showUsage: Bool

    package init(_ description: String, showUsage: Bool = false) {
        self.description = description
        self.showUsage = showUsage
    }
}

/// `etcd grpc-proxy start`'s flags: the union of etcd 3.4's and 3.5's (`etcd grpc-proxy start --help`), with
/// their defaults. Flags Quorum has no use for are accepted and reported by `notices` (logged at start).
package struct GRPCProxyOptions: Sendable {
    package var listenAddress = "127.0.0.1:23790"
    package var endpoints = ["127.0.0.1:2379"]
    package var advertiseClientURL = "127.0.0.1:23790"
    package var resolverPrefix = ""
    package var resolverTTL = 0
    package var namespace = ""
    package var metricsAddress = ""
    package var dataDir = "default.proxy"
    /// Largest request forwarded to a member and largest answer taken from one (clientv3's
    /// `MaxCallSendMsgSize`/`MaxCallRecvMsgSize`).
    package var maxSendBytes = 1_572_864
    package var maxRecvBytes = Int(Int32.max)
    package var maxConcurrentStreams = Int(UInt32.max)
    // TLS to the members.
    package var cert = ""
    package var key = ""
    package var cacert = ""
    package var insecureSkipTLSVerify = false
    // TLS for the proxy's clients.
    package var certFile = ""
    package var keyFile = ""
    package var trustedCAFile = ""
    package var clientCRLFile = ""
    package var autoTLS = false
    package var selfSignedCertValidity = 1
    package var enablePprof = false
    package var debug = false
    // 3.5's gRPC keepalive of the proxy's clients.
    package var keepaliveMinTime: Duration = .seconds(5)
    package var keepaliveInterval: Duration = .seconds(7200)
    package var keepaliveTimeout: Duration = .seconds(20)
    /// Flags given that change nothing in Quorum, with why (logged at start-up).
    package var notices: [String] = []
    package var wantsHelp = false

    package init() {}

    enum Kind { case string, strings, int, uint, bool, duration }

    /// Name, kind, and help as etcd prints it.
    static let flags: [(name: String, kind: Kind, help: String)] = [
        (
            "advertise-client-url", .string,
            "advertise address to register (must be reachable by client) (default \"127.0.0.1:23790\")"
        ),
        ("auto-tls", .bool, "proxy TLS using generated certificates"),
        ("cacert", .string, "verify certificates of TLS-enabled secure etcd servers using this CA bundle"),
        ("cert", .string, "identify secure connections with etcd servers using this TLS certificate file"),
        ("cert-file", .string, "identify secure connections to the proxy using this TLS certificate file"),
        ("client-crl-file", .string, "proxy client certificate revocation list file."),
        ("data-dir", .string, "Data directory for persistent data (default \"default.proxy\")"),
        ("debug", .bool, "Enable debug-level logging for grpc-proxy."),
        ("discovery-srv", .string, "domain name to query for SRV records describing cluster endpoints"),
        ("discovery-srv-name", .string, "service name to query when using DNS discovery"),
        (
            "enable-pprof", .bool,
            "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\""
        ),
        ("endpoints", .strings, "comma separated etcd cluster endpoints (default [127.0.0.1:2379])"),
        ("experimental-leasing-prefix", .string, "leasing metadata prefix for disconnected linearized reads."),
        (
            "experimental-serializable-ordering", .bool,
            "Ensure serializable reads have monotonically increasing store revisions across endpoints."
        ),
        (
            "grpc-keepalive-interval", .duration,
            "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable). (default 2h0m0s)"
        ),
        (
            "grpc-keepalive-min-time", .duration,
            "Minimum interval duration that a client should wait before pinging proxy. (default 5s)"
        ),
        (
            "grpc-keepalive-timeout", .duration,
            "Additional duration of wait before closing a non-responsive connection (0 to disable). (default 20s)"
        ),
        ("insecure-discovery", .bool, "accept insecure SRV records"),
        (
            "insecure-skip-tls-verify", .bool,
            "skip authentication of etcd server TLS certificates (CAUTION: this option should be enabled only for testing purposes)"
        ),
        ("key", .string, "identify secure connections with etcd servers using this TLS key file"),
        ("key-file", .string, "identify secure connections to the proxy using this TLS key file"),
        ("listen-addr", .string, "listen address (default \"127.0.0.1:23790\")"),
        (
            "listen-cipher-suites", .strings,
            "Comma-separated list of supported TLS cipher suites between client/proxy (empty will be auto-populated by Go)."
        ),
        (
            "max-concurrent-streams", .uint,
            "Maximum concurrent streams that each client can open at a time. (default 4294967295)"
        ),
        (
            "max-recv-bytes", .int,
            "message receive limits in bytes (default value is math.MaxInt32) (default 2147483647)"
        ),
        ("max-send-bytes", .int, "message send limits in bytes (default value is 1.5 MiB) (default 1572864)"),
        ("metrics-addr", .string, "listen for endpoint /metrics requests on an additional interface"),
        ("namespace", .string, "string to prefix to all keys for namespacing requests"),
        (
            "resolver-prefix", .string,
            "prefix to use for registering proxy (must be shared with other grpc-proxy members)"
        ),
        ("resolver-ttl", .int, "specify TTL, in seconds, when registering proxy endpoints"),
        ("self-signed-cert-validity", .uint, "The validity period of the proxy certificates, unit is year (default 1)"),
        ("trusted-ca-file", .string, "verify certificates of TLS-enabled secure proxy using this CA bundle"),
    ]

    package static var usage: String {
        var text = "start the grpc proxy\n\nUsage:\n  quorum grpc-proxy start [flags]\n\nFlags:\n"
        for flag in flags {
            text += "      --\(flag.name)\n            \(flag.help)\n"
        }
        text += "  -h, --help\n            help for start\n"
        return text
    }

    /// Parses the arguments after `grpc-proxy` (`start` and the flags), pflag-style: `--flag value`,
    /// `--flag=value`, `-flag`, bare booleans.
    package static func parse(_ arguments: [String]) throws(GRPCProxyError) -> GRPCProxyOptions {
        var options = GRPCProxyOptions()
        var sawStart = false
        var index = 0
        var given: [String: String] = [:]
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "-h" || argument == "--help" {
                options.wantsHelp = true
                continue
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                guard argument == "start", !sawStart else {
                    throw GRPCProxyError("unknown command \"\(argument)\" for \"quorum grpc-proxy\"", showUsage: true)
                }
                sawStart = true
                continue
            }
            var name = String(argument.drop(while: { $0 == "-" }))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let flag = flags.first(where: { $0.name == name }) else {
                if argument.hasPrefix("--") { throw GRPCProxyError("unknown flag: --\(name)", showUsage: true) }
                throw GRPCProxyError("unknown shorthand flag: '\(name.prefix(1))' in \(argument)", showUsage: true)
            }
            if flag.kind == .bool {
                let text = value ?? "true"
                guard ["true", "1", "t", "T", "TRUE", "True", "false", "0", "f", "F", "FALSE", "False"].contains(text)
                else {
                    throw GRPCProxyError(
                        "invalid argument \"\(text)\" for \"--\(name)\" flag: strconv.ParseBool: parsing \"\(text)\": invalid syntax",
                        showUsage: true)
                }
                given[name] = ["true", "1", "t", "T", "TRUE", "True"].contains(text) ? "true" : "false"
                continue
            }
            if value == nil {
                guard index < arguments.count else {
                    throw GRPCProxyError("flag needs an argument: --\(name)", showUsage: true)
                }
                value = arguments[index]
                index += 1
            }
            let text = value!
            switch flag.kind {
            case .int, .uint:
                guard let number = Int(text), flag.kind == .int || number >= 0 else {
                    let parser = flag.kind == .int ? "ParseInt" : "ParseUint"
                    throw GRPCProxyError(
                        "invalid argument \"\(text)\" for \"--\(name)\" flag: strconv.\(parser): parsing \"\(text)\": invalid syntax",
                        showUsage: true)
                }
            case .duration:
                guard parseDuration(text) != nil else {
                    throw GRPCProxyError(
                        "invalid argument \"\(text)\" for \"--\(name)\" flag: time: invalid duration \"\(text)\"",
                        showUsage: true)
                }
            case .strings:
                // pflag's string slices accumulate over repeated flags.
                if let earlier = given[name], !earlier.isEmpty, !text.isEmpty {
                    given[name] = earlier + "," + text
                    continue
                }
            default: break
            }
            given[name] = text
        }
        guard sawStart || options.wantsHelp else {
            throw GRPCProxyError("usage: quorum grpc-proxy start [flags]", showUsage: true)
        }
        try options.apply(given)
        return options
    }

    private mutating func apply(_ given: [String: String]) throws(GRPCProxyError) {
        func bool(_ name: String) -> Bool { given[name] == "true" }
        for (name, value) in given.sorted(by: { $0.key < $1.key }) {
            switch name {
            case "listen-addr": listenAddress = value
            case "endpoints": endpoints = value.split(separator: ",").map(String.init).filter { !$0.isEmpty }
            case "advertise-client-url": advertiseClientURL = value
            case "resolver-prefix": resolverPrefix = value
            case "resolver-ttl": resolverTTL = Int(value) ?? 0
            case "namespace": namespace = value
            case "metrics-addr": metricsAddress = value
            case "data-dir": dataDir = value
            case "max-send-bytes": maxSendBytes = Int(value) ?? maxSendBytes
            case "max-recv-bytes": maxRecvBytes = Int(value) ?? maxRecvBytes
            case "max-concurrent-streams": maxConcurrentStreams = Int(value) ?? maxConcurrentStreams
            case "cert": cert = value
            case "key": key = value
            case "cacert": cacert = value
            case "insecure-skip-tls-verify": insecureSkipTLSVerify = bool(name)
            case "cert-file": certFile = value
            case "key-file": keyFile = value
            case "trusted-ca-file": trustedCAFile = value
            case "auto-tls": autoTLS = bool(name)
            case "self-signed-cert-validity": selfSignedCertValidity = Int(value) ?? 1
            case "enable-pprof": enablePprof = bool(name)
            case "debug": debug = bool(name)
            case "grpc-keepalive-min-time": keepaliveMinTime = Self.parseDuration(value) ?? keepaliveMinTime
            case "grpc-keepalive-interval": keepaliveInterval = Self.parseDuration(value) ?? keepaliveInterval
            case "grpc-keepalive-timeout": keepaliveTimeout = Self.parseDuration(value) ?? keepaliveTimeout
            case "discovery-srv", "discovery-srv-name", "insecure-discovery":
                if !value.isEmpty && value != "false" {
                    notices.append("--\(name) is not supported by Quorum's grpc-proxy (give --endpoints)")
                }
            case "listen-cipher-suites":
                if !value.isEmpty { notices.append("--\(name) has no effect: Quorum uses its TLS library's suites") }
            case "client-crl-file": clientCRLFile = value
            case "experimental-leasing-prefix", "experimental-serializable-ordering":
                if !value.isEmpty && value != "false" {
                    notices.append("--\(name) has no effect: not implemented by Quorum's grpc-proxy")
                }
            default: break
            }
        }
        if enablePprof { notices.append("--enable-pprof has no effect: the proxy serves no /debug/pprof") }
        // etcd's checkArgs.
        if !resolverPrefix.isEmpty && resolverTTL < 1 { throw GRPCProxyError("invalid resolver-ttl \(resolverTTL)") }
        if resolverPrefix.isEmpty && resolverTTL > 0 {
            throw GRPCProxyError("invalid resolver-prefix \"\(resolverPrefix)\"")
        }
        if !resolverPrefix.isEmpty && resolverTTL > 0 && advertiseClientURL.isEmpty {
            throw GRPCProxyError("invalid advertise-client-url \"\(advertiseClientURL)\"")
        }
    }

    /// Go's `time.ParseDuration` for the forms flags use (`5s`, `2h0m0s`, `300ms`, `1.5s`, `0`).
    static func parseDuration(_ text: String) -> Duration? {
        if text == "0" { return .zero }
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var rest = Substring(text)
        var negative = false
        if rest.first == "-" || rest.first == "+" {
            negative = rest.first == "-"
            rest = rest.dropFirst()
        }
        guard !rest.isEmpty else { return nil }
        var seconds = 0.0
        while !rest.isEmpty {
            let number = rest.prefix(while: { $0.isNumber || $0 == "." })
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix(while: { !$0.isNumber && $0 != "." })
            guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            seconds += value * unit.1
        }
        return .nanoseconds(Int64((negative ? -seconds : seconds) * 1e9))
    }
}
