import ArgumentParser

/// quorumctl: Quorum's admin CLI. Everyday key-value work stays with etcdctl; this tool covers what etcdctl
/// cannot: certificates, snapshot restore into Quorum, backups, diagnostics.
@main
struct QuorumCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quorumctl",
        abstract: "Administer Quorum members: certificates, snapshots, diagnostics.",
        subcommands: subcommandList
    )
}

/// Each command group registers itself here (one line per group keeps concurrent edits apart).
let subcommandList: [any ParsableCommand.Type] = [
    VersionCommand.self,
    PKICommand.self,
    CertsCommand.self,
    SnapshotCommand.self,
    BackupCommand.self,
]

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")

    func run() {
        print("quorumctl version: 0.1.0")
    }
}
