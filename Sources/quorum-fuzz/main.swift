import Foundation
// quorum-fuzz TARGET [libFuzzer options] [corpus directories or files]
// quorum-fuzz seeds-peer WALDIR OUTDIR
// quorum-fuzz seeds-auth OUTDIR
// quorum-fuzz seeds-raft OUTDIR
//
// Built by scripts/fuzz.sh with `-sanitize=fuzzer,address -DQUORUM_LIBFUZZER`: libFuzzer runs TARGET
// (`FuzzTarget`) over the corpus. SwiftPM links an executable's own `main` (the code below) in place of libFuzzer's,
// so this calls libFuzzer's driver itself, with the target name taken out of the arguments. In an ordinary build
// (no libFuzzer to link), it runs TARGET once on each file named, which replays a reproducer outside the fuzzer.
import FuzzHarness

func usage() -> Never {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
    FileHandle.standardError.write(Data("usage: quorum-fuzz \(names) [libFuzzer options] [inputs]\n".utf8))
    exit(2)
}

// The target comes from the first argument, or from QUORUM_FUZZ_TARGET for the processes libFuzzer starts itself
// (-fork, -jobs), which get the arguments without it.
var arguments = CommandLine.arguments
if arguments.count == 4 && arguments[1] == "seeds-peer" {
    // scripts/fuzz-seeds.sh: the peer target's seeds from a real member's WAL.
    do {
        try PeerSeeds.write(fromWAL: arguments[2], to: arguments[3])
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("quorum-fuzz: \(error)\n".utf8))
        exit(1)
    }
}
// scripts/fuzz-seeds.sh: the auth target's seeds, made by the providers it fuzzes, and the raft target's, the
// messages of the scenarios' cluster.
let seedWriters: [String: (String) throws -> Void] = ["seeds-auth": writeAuthSeeds, "seeds-raft": writeRaftSeeds]
if arguments.count == 3, let write = seedWriters[arguments[1]] {
    do {
        try write(arguments[2])
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("quorum-fuzz: \(error)\n".utf8))
        exit(1)
    }
}
let target: FuzzTarget
if arguments.count > 1, let named = FuzzTarget(rawValue: arguments[1]) {
    target = named
    arguments.remove(at: 1)
    setenv("QUORUM_FUZZ_TARGET", named.rawValue, 1)
} else if let name = ProcessInfo.processInfo.environment["QUORUM_FUZZ_TARGET"], let named = FuzzTarget(rawValue: name) {
    target = named
} else {
    usage()
}
#if QUORUM_LIBFUZZER
    nonisolated(unsafe) var selected = target

    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// libFuzzer's runtime references this symbol (its own `main`, unused here, calls it); it runs the selected target.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        selected.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    var argc = CInt(arguments.count)
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    let status = argv.withUnsafeMutableBufferPointer { buffer -> CInt in
        var base = buffer.baseAddress!
        return LLVMFuzzerRunDriver(&argc, &base, testOneInput)
    }
    exit(status)
#else
    for path in arguments.dropFirst() {
        guard let data = FileManager.default.contents(atPath: path) else {
            FileHandle.standardError.write(Data("quorum-fuzz: cannot read \(path)\n".utf8))
            exit(1)
        }
        target.run(Array(data))
        print("\(target.rawValue): \(path): ok")
    }
#endif
