import Foundation
import Testing

@testable import FuzzHarness

/// Replays every committed fuzz input through its target without libFuzzer: the seed corpora (`Corpus/<target>/`,
/// made by scripts/fuzz-seeds.sh from real files and traffic) and the inputs that once crashed a target
/// (`Regressions/<target>/`, each fixed since). A crash here is a regression; the target's name and the file are
/// printed before each input runs, so the failing one is the last named.
@Suite struct CorpusReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    static func inputs(_ folder: String, _ target: FuzzTarget) -> [URL] {
        let directory = root.appendingPathComponent(folder).appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    static func replay(_ files: [URL], _ target: FuzzTarget) throws {
        for file in files {
            print("FuzzTests: \(target.rawValue) \(file.path)")
            target.run(Array(try Data(contentsOf: file)))
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func seedCorpus(_ target: FuzzTarget) throws {
        let files = Self.inputs("Corpus", target)
        #expect(!files.isEmpty, "no seed corpus for \(target.rawValue): run scripts/fuzz-seeds.sh")
        try Self.replay(files, target)
    }

    @Test(arguments: FuzzTarget.allCases)
    func regressions(_ target: FuzzTarget) throws {
        try Self.replay(Self.inputs("Regressions", target), target)
    }

    /// The auth seeds are tokens the target's providers accept, so the fuzzer starts from the paths that resolve a
    /// user, not only from refusals.
    @Test func authSeedsResolve() throws {
        var resolved: [String] = []
        for file in Self.inputs("Corpus", .auth) {
            let token = try String(contentsOf: file, encoding: .utf8)
            for var provider in AuthTarget.jwt where provider.info(token: token, currentRevision: 1) != nil {
                resolved.append(provider.signMethod.rawValue)
            }
        }
        #expect(Set(resolved) == ["RS256", "PS256", "ES256", "HS256"], "\(resolved)")
    }

    /// Inputs no target may crash on, whatever it parses: nothing, one byte, a run of zeros, of 0xFF.
    @Test(arguments: FuzzTarget.allCases)
    func degenerateInputs(_ target: FuzzTarget) {
        for input: [UInt8] in [
            [], [0], [0xFF], [UInt8](repeating: 0, count: 4096), [UInt8](repeating: 0xFF, count: 4096),
        ] {
            target.run(input)
        }
    }
}
