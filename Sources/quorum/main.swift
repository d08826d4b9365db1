// quorum: an etcd-compatible member. Takes etcd's flags, ETCD_* variables and YAML config file.
//
// Flags are parsed Go-style (`-flag`, `--flag`, `--flag=value`, bare booleans) because that is the syntax
// etcd's users and deployment tooling already write; an unknown or malformed flag exits with status 2, as etcd's.
import Foundation
import Logging
import Node
import Server
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

func usage() -> String {
    var text = "Usage:\n\n  quorum [flags]\n    Start a Quorum member (etcd-compatible).\n\nFlags:\n"
    for (name, help) in EtcdFlags.known {
        text += "  --\(name)\n      \(help)\n"
    }
    text += "  --version\n      Print the version and exit.\n"
    return text
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("quorum: \(message)\n".utf8))
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
var flags: EtcdFlags
do {
    let parsed = try EtcdFlags.parse(arguments: arguments)
    if parsed.wantsHelp {
        print(usage())
        exit(0)
    }
    if parsed.wantsVersion {
        print("quorum Version: \(Version.quorum)")
        print("etcd API Version: \(Version.etcdServer)")
        print("Swift Version: 6")
        exit(0)
    }
    flags = parsed.0
    try flags.applyEnvironment(ProcessInfo.processInfo.environment)
    if let file = flags.values["config-file"], !file.isEmpty {
        flags = try EtcdFlags.load(configFile: file)
    }
} catch {
    fail("\(error)\n\nRun 'quorum --help' for the list of flags.")
}

let config: ServerConfig
let level: Logger.Level
do {
    config = try flags.resolve()
    level = try flags.logLevel()
} catch {
    fail("\(error)")
}

var outputFD: Int32 = 2
for output in flags.logOutputs {
    switch output {
    case "stderr", "default": outputFD = 2
    case "stdout": outputFD = 1
    default:
        let fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { fail("cannot open log output \(output)") }
        outputFD = fd
    }
}
let fd = outputFD
LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, fd: fd) }
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
