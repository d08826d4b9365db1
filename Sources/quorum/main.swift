// quorum: an etcd-compatible member. Takes etcd's flags, ETCD_* variables and YAML config file.
//
// Flags are parsed Go-style (`-flag`, `--flag`, `--flag=value`, bare booleans) because that is the syntax
// etcd's users and deployment tooling already write; an unknown or malformed flag exits with status 2, as etcd's.
import Foundation
import GRPCProxy
import Logging
import Node
import Server
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

func usage() -> String {
    var text = """
        Usage:

          quorum [flags]
            Start a Quorum member (etcd-compatible: etcd's flags, ETCD_* variables and config file).

          quorum --version
            Show the version of Quorum (and of etcd's API it serves).

          quorum -h | --help
            Show the help information about Quorum.

          quorum --config-file
            Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.


        """
    for section in EtcdFlag.Section.allCases {
        let flags = EtcdFlags.table.filter { $0.section == section }
        guard !flags.isEmpty else { continue }
        text += "\(section.rawValue):\n"
        if section == .legacy {
            text += "  " + flags.map { "--\($0.name)" }.joined(separator: ", ") + "\n\n"
            continue
        }
        for flag in flags {
            text += "  --\(flag.name) \(flag.defaultText)\n    \(flag.help)\n"
            if case .noEffect(let why) = flag.effect { text += "    [No effect in Quorum: \(why).]\n" }
        }
        text += "\n"
    }
    text += "CAUTIOUS with unsafe flag! It may break the guarantees given by the consensus protocol!\n"
    return text
}

func fail(_ message: String, status: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("quorum: \(message)\n".utf8))
    exit(status)
}

/// etcd's `--version` lines (tooling reads "etcd Version:"), then Quorum's own.
func versionText() -> String {
    #if arch(x86_64)
        let arch = "amd64"
    #elseif arch(arm64)
        let arch = "arm64"
    #else
        let arch = "unknown"
    #endif
    return """
        etcd Version: \(Version.etcdServer)
        Git SHA: Not provided (Quorum \(Version.quorum))
        Go Version: none (Quorum is written in Swift 6)
        Go OS/Arch: linux/\(arch)
        quorum Version: \(Version.quorum)
        """
}

let arguments = Array(CommandLine.arguments.dropFirst())
let environment = ProcessInfo.processInfo.environment
Allocator.limitArenas(environment: environment)

/// `quorum gateway start`: etcd's L4 gateway (a TCP proxy to the cluster's client endpoints). Errors are reported as
/// etcd's cobra commands report them ("Error: ...", status 1).
func runGateway(_ arguments: [String]) async -> Never {
    let options: TCPGatewayOptions
    do {
        options = try TCPGatewayOptions.parse(arguments)
    } catch {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        exit(1)
    }
    let settings = LogSettings()
    LoggingSystem.bootstrap { label in settings.makeHandler(label: label, fds: [2]) }
    let logger = Logger(label: "gateway")
    await runUntilSignalled(name: "gateway", logger: logger) { try await TCPGateway.run(options, logger: logger) }
}

/// `quorum grpc-proxy start`: etcd's gRPC proxy (an L7 proxy in front of the cluster). Errors as etcd's cobra
/// command reports them: "Error: ..." and the usage for flag errors (status 1); start-up failures on their own.
func runGRPCProxy(_ arguments: [String]) async -> Never {
    let options: GRPCProxyOptions
    do {
        options = try GRPCProxyOptions.parse(arguments)
    } catch {
        FileHandle.standardError.write(
            Data(("Error: \(error)\n" + (error.showUsage ? GRPCProxyOptions.usage : "")).utf8))
        exit(1)
    }
    if options.wantsHelp {
        print(GRPCProxyOptions.usage)
        exit(0)
    }
    var settings = LogSettings()
    if options.debug { settings.level = .debug }
    LoggingSystem.bootstrap { [settings] label in settings.makeHandler(label: label, fds: [2]) }
    let logger = Logger(label: "grpc-proxy")
    await runUntilSignalled(name: "grpc-proxy", logger: logger) {
        do {
            try await GRPCProxy.run(options, logger: logger)
        } catch let error as GRPCProxyError {
            // A start-up refusal, worded as etcd's proxy words it: on its own line, not as a log record.
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            exit(1)
        }
    }
}

/// Runs `body` (the gateway or the gRPC proxy) until it returns or SIGTERM/SIGINT cancels it: exit status 0, or 1
/// with the error logged.
func runUntilSignalled(name: String, logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async
    -> Never
{
    let task = Task { try await body() }
    for signal in [SIGTERM, SIGINT] {
        let source = DispatchSource.makeSignalSource(signal: signal)
        Foundation.signal(signal, SIG_IGN)
        source.setEventHandler { task.cancel() }
        source.resume()
        gatewaySignalSources.append(source)
    }
    do {
        try await task.value
        exit(0)
    } catch is CancellationError {
        exit(0)
    } catch {
        logger.critical("\(name) stopped: \(error)")
        exit(1)
    }
}

nonisolated(unsafe) var gatewaySignalSources: [any DispatchSourceSignal] = []

switch arguments.first {
case "gateway":
    await runGateway(Array(arguments.dropFirst()))
case "grpc-proxy":
    await runGRPCProxy(Array(arguments.dropFirst()))
default:
    break
}
var flags: EtcdFlags
var configFilePath: String?
do {
    let parsed = try EtcdFlags.parse(arguments: arguments)
    if parsed.wantsHelp {
        print(usage())
        exit(0)
    }
    if parsed.wantsVersion {
        print(versionText())
        exit(0)
    }
    flags = parsed.0
    // As etcd: a config file (from the flag or ETCD_CONFIG_FILE) replaces the command line and the environment.
    if let file = flags.values["config-file"].flatMap({ $0.isEmpty ? nil : $0 })
        ?? environment["ETCD_CONFIG_FILE"].flatMap({ $0.isEmpty ? nil : $0 })
    {
        configFilePath = file
        flags = try EtcdFlags.load(configFile: file)
    } else {
        try flags.applyEnvironment(environment)
    }
} catch let error as ConfigError {
    fail(
        "\(error)" + (error.exitStatus == 2 ? "\n\nRun 'quorum --help' for the list of flags." : ""),
        status: error.exitStatus)
} catch {
    fail("\(error)\n\nRun 'quorum --help' for the list of flags.")
}

var config: ServerConfig
let logSettings: LogSettings
do {
    config = try flags.resolve()
    logSettings = try flags.logSettings()
} catch let error as ConfigError {
    fail("\(error)", status: error.exitStatus)
} catch {
    fail("\(error)")
}
// Tests of WAL retention cut segments small instead of writing 64 MiB each.
if let bytes = environment["QUORUM_TESTING_WAL_SEGMENT_BYTES"].flatMap(Int.init), bytes > 0 {
    config.node.walSegmentBytes = bytes
}

let outputs: [Int32]
do {
    outputs = try logSettings.openOutputs()
} catch {
    fail("\(error)")
}
if logSettings.format == .capnslog {
    // etcd 3.4 prints this (to standard error) whenever capnslog is chosen.
    FileHandle.standardError.write(
        Data("[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead\n".utf8))
}
LoggingSystem.bootstrap { label in logSettings.makeHandler(label: label, fds: outputs) }
// What reading the configuration had to say, in etcd's words for the chosen format.
for notice in flags.notices + flags.ignoredFlagNotices() + config.notices {
    let level: Logger.Level = notice.level == .info ? .info : .warning
    if logSettings.format == .capnslog {
        Logger(label: notice.package).log(level: level, "\(notice.text)")
    } else {
        Logger(label: "quorum").log(
            level: level, "\(notice.message)", metadata: notice.fields.mapValues { .string($0) })
    }
}
if let configFilePath {
    Logger(label: "etcdmain").info(
        "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided",
        metadata: ["path": "\(configFilePath)"])
}
let logger = Logger(label: "quorum")
let server = QuorumServer(config: config, logger: logger)
do {
    // The ports open before anything else, as etcd's do; the member accepts on them once it serves.
    try server.openListeners()
} catch {
    logger.critical("quorum stopped: \(error)")
    exit(1)
}
logger.info(
    "starting quorum",
    metadata: [
        "quorum-version": "\(Version.quorum)", "etcd-api-version": "\(Version.etcdServer)",
        "name": "\(config.node.name)", "data-dir": "\(config.node.dataDir)",
        "listen-client-urls": "\(config.listenClientURLs.map(\.description).joined(separator: ","))",
        "advertise-client-urls": "\(config.node.advertiseClientURLs.joined(separator: ","))",
    ])
let group = ServiceGroup(
    configuration: .init(
        services: [
            .init(
                service: server, successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup)
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
do {
    try await group.run()
} catch {
    logger.critical("quorum stopped: \(error)")
    exit(1)
}
