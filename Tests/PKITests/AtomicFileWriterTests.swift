import Foundation
import TestSupport
import Testing

@testable import PKI

@Suite("Atomic writes")
struct AtomicFileWriterTests {
    @Test("create, replace with .prev, unchanged, modes, no temporary files left")
    func lifecycle() throws {
        let dir = TemporaryDirectory()
        let target = dir.fileURL("server.key")
        #expect(try AtomicFileWriter.write("one", to: target, mode: 0o600) == .created)
        #expect(Files.mode(target) == 0o600)
        #expect(!Files.exists(PKILayout.previousCopy(of: target)))
        #expect(try AtomicFileWriter.write("one", to: target, mode: 0o600) == .unchanged)
        #expect(!Files.exists(PKILayout.previousCopy(of: target)))
        #expect(try AtomicFileWriter.write("two", to: target, mode: 0o600) == .replaced)
        #expect(try String(contentsOf: target, encoding: .utf8) == "two")
        #expect(try String(contentsOf: PKILayout.previousCopy(of: target), encoding: .utf8) == "one")
        #expect(Files.mode(PKILayout.previousCopy(of: target)) == 0o600)
        #expect(try AtomicFileWriter.write("three", to: target, mode: 0o600) == .replaced)
        #expect(try String(contentsOf: PKILayout.previousCopy(of: target), encoding: .utf8) == "two")
        #expect(Files.tree(dir.url) == ["server.key", "server.key.prev"])

        try AtomicFileWriter.remove(target)
        #expect(Files.tree(dir.url) == ["server.key.prev"])
        try AtomicFileWriter.remove(target)  // idempotent
    }

    @Test("directories are created and tightened to 0700")
    func directories() throws {
        let dir = TemporaryDirectory()
        let nested = dir.fileURL("a/b")
        try FileManager.default.createDirectory(
            at: nested, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try AtomicFileWriter.ensureDirectory(nested)
        #expect(Files.mode(nested) == 0o700)
    }

    @Test("a failed write leaves the target intact and no temporary file")
    func failure() throws {
        let dir = TemporaryDirectory()
        let target = dir.fileURL("ca.crt")
        try AtomicFileWriter.write("keep", to: target, mode: 0o644)
        // Renaming a file over a non-empty directory fails after the temporary file was written.
        let blocker = dir.fileURL("blocked")
        try FileManager.default.createDirectory(
            at: blocker.appendingPathComponent("x"), withIntermediateDirectories: true)
        #expect(throws: PKIError.self) {
            try AtomicFileWriter.write("new", to: blocker, mode: 0o644, keepPrevious: false)
        }
        #expect(Files.tree(dir.url) == ["blocked", "blocked/x", "ca.crt"])
        #expect(try String(contentsOf: target, encoding: .utf8) == "keep")
    }
}
