// quorum-bench: a load generator for etcd-compatible servers (Quorum, etcd) on the etcd v3 gRPC API.
//
// Modelled on etcd's tools/benchmark and on ../shared/bench/etcdload, with the same workloads, flags and JSON
// fields, so its numbers can be put beside those of etcd's own Go client: if the two clients disagree about a
// server, the difference is the client's, not the server's.
import ArgumentParser
import Foundation

/// The command line: one subcommand per workload, sharing the connection and key-space options.
/// `@main` rather than a top-level `main()` call: only the attribute reaches `AsyncParsableCommand`'s async entry
/// point (the synchronous one prints the help of async subcommands instead of running them).
@main
struct QuorumBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quorum-bench",
        abstract: "Load generator for etcd-compatible servers (Quorum or etcd) over the etcd v3 gRPC API.",
        discussion: """
            N clients share M gRPC connections round robin (client i uses connection i % M); every request is timed
            on its own and recorded in an HDR histogram. Each run is bounded by --total requests and by --duration
            seconds, whichever comes first. Results: a table (or, with --json, one JSON line with the same fields as
            ../shared/bench's etcdload). A progress bar is drawn on stderr when it is a terminal.

            Examples:
              quorum-bench put --clients 64 --conns 8 --total 100000
              quorum-bench range --consistency s --clients 64 --conns 8 --key-space 10000
              quorum-bench txn-put --clients 64 --conns 8
              quorum-bench watch-latency --watchers 100 --conns 10 --put-rate 100 --duration 10
              quorum-bench lease-keepalive --clients 64 --conns 8
            """,
        subcommands: [Put.self, Range.self, TxnPut.self, WatchLatency.self, LeaseKeepAlive.self])
}

/// Options every workload takes. Names and defaults follow etcdload (and etcd's tools/benchmark where they agree).
struct CommonOptions: ParsableArguments {
    @Option(help: "Comma separated gRPC endpoints, host:port or http://host:port.")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Concurrent clients (closed loop: each waits for its answer before the next request).")
    var clients = 1

    @Option(help: "gRPC connections (HTTP/2), shared round robin by the clients.")
    var conns = 1

    @Option(help: "Request count cap (for watch-latency: the number of puts).")
    var total = 10000

    @Option(help: "Time cap of the measured phase, in seconds.")
    var duration: Double = 20

    @Option(help: "Key size in bytes (a varint of a random number below --key-space, as etcd's benchmark).")
    var keySize = 8

    @Option(help: "Value size in bytes.")
    var valSize = 256

    @Option(help: "Keys are drawn from this many distinct keys.")
    var keySpace = 100_000

    @Flag(help: "Use sequential instead of random keys.")
    var sequentialKeys = false

    @Option(help: "Per request timeout, in seconds.")
    var timeout: Double = 10

    @Option(help: "NAME:PASSWORD: authenticate first (etcd's simple or JWT token), as etcdctl's --user.")
    var user: String?

    @Flag(help: "Print one JSON line instead of the table.")
    var json = false

    @Flag(help: "Never draw the progress bar.")
    var noProgress = false

    func validate() throws {
        guard clients >= 1, conns >= 1, total >= 1 else {
            throw ValidationError("--clients, --conns and --total must be >= 1")
        }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be in (0, 3600]") }
        guard keySize >= 1, valSize >= 0, keySpace >= 1 else { throw ValidationError("bad key or value sizes") }
        if keySize < 10 && keySpace > (1 << (7 * keySize - 1)) {
            throw ValidationError("--key-space \(keySpace) does not fit in --key-size \(keySize)")
        }
        _ = try Endpoint.parseList(endpoints)
    }

    func settings(workload: Workload) throws -> BenchSettings {
        BenchSettings(
            workload: workload, endpoints: try Endpoint.parseList(endpoints), clients: clients,
            conns: min(conns, clients), total: total, duration: duration, keySize: keySize, valSize: valSize,
            keySpace: keySpace, sequentialKeys: sequentialKeys, timeout: timeout,
            credentials: try user.map { text in
                guard let colon = text.firstIndex(of: ":") else { throw ValidationError("--user takes NAME:PASSWORD") }
                return (String(text[..<colon]), String(text[text.index(after: colon)...]))
            })
    }
}

extension QuorumBench {
    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Closed-loop puts.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Bench.runAndReport(try options.settings(workload: .put), options: options)
        }
    }

    struct Range: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Closed-loop single-key ranges (gets).")
        @OptionGroup var options: CommonOptions

        @Option(help: "l: linearizable (ReadIndex), s: serializable (local).")
        var consistency = "l"

        @Option(help: "Keys written before measuring (-1: min(key-space, 100000)).")
        var preload = -1

        func validate() throws {
            guard consistency == "l" || consistency == "s" else { throw ValidationError("--consistency is l or s") }
        }

        func run() async throws {
            var settings = try options.settings(
                workload: consistency == "s" ? .rangeSerializable : .rangeLinearizable)
            settings.preload = preload < 0 ? min(options.keySpace, 100_000) : preload
            try await Bench.runAndReport(settings, options: options)
        }
    }

    struct TxnPut: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "txn-put", abstract: "Txn: if mod_revision(key) > -1 then put (always the put branch).")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Bench.runAndReport(try options.settings(workload: .txnPut), options: options)
        }
    }

    struct WatchLatency: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "watch-latency",
            abstract: "One writer puts one key at --put-rate; --watchers watch it. Latency: put issued → event.",
            discussion: "The watchers share --conns connections, one watch stream per connection (as clientv3 does).")
        @OptionGroup var options: CommonOptions

        @Option(help: "Watchers (default: --clients).")
        var watchers: Int?

        @Option(help: "Puts per second by the single writer.")
        var putRate = 100

        func run() async throws {
            var settings = try options.settings(workload: .watchLatency)
            settings.clients = watchers ?? options.clients
            settings.conns = min(options.conns, settings.clients)
            settings.putRate = max(1, putRate)
            try await Bench.runAndReport(settings, options: options)
        }
    }

    struct LeaseKeepAlive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lease-keepalive",
            abstract: "One lease per client, renewed in a loop with a one-shot keep-alive stream (KeepAliveOnce).")
        @OptionGroup var options: CommonOptions

        @Option(help: "TTL of the granted leases, in seconds.")
        var leaseTTL: Int64 = 60

        func run() async throws {
            var settings = try options.settings(workload: .leaseKeepAlive)
            settings.leaseTTL = leaseTTL
            try await Bench.runAndReport(settings, options: options)
        }
    }
}
