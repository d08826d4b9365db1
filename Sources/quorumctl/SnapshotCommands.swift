import ArgumentParser
import Crypto
import EtcdAPI
import EtcdProto
import EtcdSnapshot
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Node
import Server

#if canImport(Glibc)
    import Glibc
#endif

/// `quorumctl snapshot`: etcd-format snapshots, as `etcdctl snapshot` and `etcdutl snapshot` handle them. The files
/// are interchangeable with etcd's in both directions.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Save, inspect and restore etcd-format snapshots.",
        subcommands: [SnapshotSaveCommand.self, SnapshotStatusCommand.self, SnapshotRestoreCommand.self])
}

/// How to reach a member: etcdctl's connection flags.
struct EndpointOptions: ParsableArguments {
    @Option(name: .long, help: "The member to ask (one URL; http:// or https://).")
    var endpoints = "http://127.0.0.1:2379"
    @Option(name: .long, help: "CA bundle to verify the member's certificate with.")
    var cacert: String?
    @Option(name: .long, help: "Client certificate to present.")
    var cert: String?
    @Option(name: .long, help: "Key of --cert.")
    var key: String?
    @Option(name: .long, help: "Give up when the member does not answer within this many seconds.")
    var dialTimeout: Int = 5

    func target() throws -> (ListenURL, HTTP2ClientTransport.Posix.TransportSecurity) {
        guard let first = endpoints.split(separator: ",").first else { throw ValidationError("--endpoints is empty") }
        let text = String(first).contains("://") ? String(first) : "http://" + first
        let url = try ListenURL(text)
        guard url.isTLS else { return (url, .plaintext) }
        var tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: cert.map { [.file(path: $0, format: .pem)] } ?? [],
            privateKey: key.map { .file(path: $0, format: .pem) },
            serverCertificateVerification: .noHostnameVerification,
            trustRoots: cacert.map { .certificates([.file(path: $0, format: .pem)]) } ?? .systemDefault)
        if cacert == nil { tls.serverCertificateVerification = .fullVerification }
        return (url, .tls(tls))
    }
}

struct SnapshotSaveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Stream a member's snapshot into FILE (etcd's format, with its sha256 trailer).",
        discussion: "The file is written as FILE.part and renamed once complete and verified.")

    @Argument(help: "Where to write the snapshot.") var file: String
    @OptionGroup var endpoint: EndpointOptions

    func run() async throws {
        let (url, security) = try endpoint.target()
        let partial = file + ".part"
        _ = FileManager.default.createFile(atPath: partial, contents: nil)
        guard let out = FileHandle(forWritingAtPath: partial) else {
            throw ValidationError("cannot create \(partial)")
        }
        defer { try? FileManager.default.removeItem(atPath: partial) }
        let target: any ResolvableTarget =
            url.host.contains(":")
            ? .ipv6(address: url.host, port: url.port)
            : url.host.allSatisfy({ $0.isNumber || $0 == "." })
                ? .ipv4(address: url.host, port: url.port) : .dns(host: url.host, port: url.port)
        let showProgress = isatty(STDERR_FILENO) == 1
        let (revision, written, intact) = try await withGRPCClient(
            transport: .http2NIOPosix(target: target, transportSecurity: security)
        ) { client in
            var options = CallOptions.defaults
            options.maxResponseMessageBytes = 16 << 20
            return try await Etcdserverpb_Maintenance.Client(wrapping: client).snapshot(
                Etcdserverpb_SnapshotRequest(), options: options
            ) { response in
                var progress = Progress(enabled: showProgress)
                var digest = SHA256()
                var tail: [UInt8] = []
                var written = 0
                var revision: Int64 = 0
                for try await message in response.messages {
                    if message.hasHeader { revision = message.header.revision }
                    let bytes = [UInt8](message.blob)
                    // Everything but the last 32 bytes is hashed; those are the trailer to compare with.
                    tail += bytes
                    if tail.count > 32 {
                        let body = tail.count - 32
                        digest.update(data: tail[..<body])
                        tail.removeFirst(body)
                    }
                    out.write(Data(bytes))
                    written += bytes.count
                    progress.update(written: written, remaining: Int(message.remainingBytes))
                }
                progress.finish()
                return (revision, written, tail.count == 32 && Array(digest.finalize()) == tail)
            }
        }
        try out.synchronize()
        try out.close()
        guard intact else {
            throw ValidationError(
                "snapshot from \(url) is damaged: its sha256 trailer does not match what was received")
        }
        if FileManager.default.fileExists(atPath: file) { try FileManager.default.removeItem(atPath: file) }
        try FileManager.default.moveItem(atPath: partial, toPath: file)
        print("Snapshot saved at \(file) (revision \(revision), \(ByteCount.format(Int64(written))))")
    }
}

struct SnapshotStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print a snapshot file's hash, revision, key count and size (as etcdutl).")

    @Argument(help: "The snapshot file.") var file: String
    @Option(name: [.customShort("w"), .long], help: "Output format: table, json or simple.")
    var writeOut = "simple"

    func run() throws {
        let status: SnapshotStatus
        do {
            status = try EtcdSnapshotReader(path: file, hashCheck: .verifyIfPresent).status()
        } catch {
            throw ValidationError("\(error)")
        }
        let hash = String(status.hash, radix: 16)
        switch writeOut {
        case "json":
            print(
                #"{"hash":\#(status.hash),"revision":\#(status.revision),"totalKey":\#(status.totalKey),"#
                    + #""totalSize":\#(status.totalSize)}"#)
        case "table":
            let size = ByteCount.format(status.totalSize)
            let cells = [hash, "\(status.revision)", "\(status.totalKey)", size]
            let headers = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
            let widths = zip(headers, cells).map { max($0.count, $1.count) + 2 }
            let line = "+" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "+") + "+"
            func row(_ values: [String]) -> String {
                "|"
                    + zip(values, widths).map { v, w in " " + v.padding(toLength: w - 1, withPad: " ", startingAt: 0) }
                    .joined(separator: "|") + "|"
            }
            print([line, row(headers), line, row(cells), line].joined(separator: "\n"))
        case "simple":
            print("\(hash), \(status.revision), \(status.totalKey), \(ByteCount.format(status.totalSize))")
        default:
            throw ValidationError("unknown output format \(writeOut): use simple, table or json")
        }
    }
}

struct SnapshotRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Make a member's data directory from a snapshot (of etcd 3.4, etcd 3.5 or Quorum).",
        discussion: """
            As etcdctl snapshot restore: the keys, their history, leases, alarms and users come from the snapshot, \
            the membership from the flags. Run it once per member of the new cluster, each with its --name and \
            --initial-advertise-peer-urls and the same --initial-cluster and --initial-cluster-token; then start \
            every member on its directory with the same flags.
            """)

    @Argument(help: "The snapshot file.") var file: String
    @Option(name: .long, help: "The directory to create (must not exist; default: NAME.quorum).") var dataDir: String?
    @Option(name: .long, help: "This member's name.") var name = "default"
    @Option(name: .long, help: "The new cluster's members: name=peerURL,...")
    var initialCluster = "default=http://localhost:2380"
    @Option(name: .long, help: "The new cluster's token.") var initialClusterToken = "etcd-cluster"
    @Option(name: .long, help: "This member's peer URLs.") var initialAdvertisePeerUrls = "http://localhost:2380"
    @Flag(name: .long, help: "Accept a file without a sha256 trailer (e.g. a member's db file copied by hand).")
    var skipHashCheck = false

    func run() throws {
        var options = SnapshotRestore.Options(snapshotPath: file, dataDir: dataDir ?? "\(name).quorum")
        options.name = name
        options.initialCluster = initialCluster
        options.initialClusterToken = initialClusterToken
        options.initialAdvertisePeerURLs = initialAdvertisePeerUrls.split(separator: ",").map(String.init)
        options.skipHashCheck = skipHashCheck
        do {
            let summary = try SnapshotRestore.restore(options)
            print(
                "restored snapshot \(file) into \(options.dataDir): revision \(summary.revision), "
                    + "\(summary.revisions) revisions, \(summary.leases) leases; member \(Identity.hex(summary.memberID)) "
                    + "of cluster \(Identity.hex(summary.clusterID)) with \(summary.members.count) members")
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

/// A one-line progress bar on a terminal (nothing otherwise).
struct Progress {
    let enabled: Bool
    private var last = Date.distantPast

    init(enabled: Bool) { self.enabled = enabled }

    mutating func update(written: Int, remaining: Int) {
        guard enabled, Date().timeIntervalSince(last) > 0.1 || remaining == 0 else { return }
        last = Date()
        let total = written + remaining
        let fraction = total > 0 ? Double(written) / Double(total) : 1
        let filled = Int(fraction * 30)
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: 30 - filled)
        FileHandle.standardError.write(
            Data(
                "\r[\(bar)] \(Int(fraction * 100))% \(ByteCount.format(Int64(written))) / \(ByteCount.format(Int64(total)))"
                    .utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Sizes as etcd prints them (humanize.Bytes: SI units).
enum ByteCount {
    static func format(_ bytes: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB", "PB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        return value < 10
            ? String(format: "%.1f %@", value, units[unit]) : String(format: "%.0f %@", value, units[unit])
    }
}
