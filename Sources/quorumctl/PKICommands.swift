import ArgumentParser
import Foundation
import PKI

/// `quorumctl pki …`: the cluster's CAs, created once and handed to every member.
struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Create the cluster's certificate authorities.",
        subcommands: [PKIInitCommand.self])
}

struct PKIInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the clients and peers CAs in a directory to give every member.",
        discussion: """
            Writes clients-ca.crt|key and peers-ca.crt|key (keys 0600). Start every member with \
            --pki-ca-dir DIR (or copy the files into <data-dir>/pki/ca/): each member then issues and renews its own \
            server, peer and admin certificates from these CAs. Keep the directory safe: the keys sign everything.
            """)

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Key algorithm: ecdsa-p256 (default) or rsa-2048.")
    var keyAlgorithm = "ecdsa-p256"

    @Option(name: .long, help: "CA validity, e.g. 3650d, 10y.")
    var caValidity = "10y"

    @Flag(name: .long, help: "Replace existing CA files (members that trust the old CAs will stop trusting you).")
    var force = false

    func run() throws {
        guard let algorithm = KeyAlgorithm(flagValue: keyAlgorithm) else {
            throw ValidationError("unknown key algorithm \(keyAlgorithm): use ecdsa-p256 or rsa-2048")
        }
        let validity = try LeafLifetime(parsing: caValidity).seconds
        let result = try PKIInit.run(
            outputDirectory: URL(fileURLWithPath: out), keyAlgorithm: algorithm, validity: validity,
            overwrite: force, now: Date())
        for kind in CAKind.allCases {
            guard let status = result.certificateAuthorities[kind] else { continue }
            print("created \(kind.rawValue) CA \(status.subject) valid until \(RFC3339.string(status.notAfter))")
            print("  \(status.path)")
        }
        print(
            "next: start each member with --pki-ca-dir \(result.outputDirectory.path) (or copy it to <data-dir>/pki/ca/)"
        )
    }
}
