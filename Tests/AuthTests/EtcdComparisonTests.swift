import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// Runs the same auth story against a real etcd (the installed 3.4.23, started on free loopback ports and
/// stopped by its own pid) through etcdctl, and against the core, and expects the same answer at every step:
/// success, or the same gRPC code and message. Steps where etcd 3.4 and 3.5 differ (range validation on grant,
/// nested Txn checks, Compact's admin check, AuthStatus) are left out. Skipped where etcd is not installed.
@Suite(
    .enabled(
        if: FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl")))
struct EtcdComparisonTests {
    /// One etcd member on loopback.
    final class Etcd {
        let process = Process()
        let directory: URL
        let endpoint: String

        init() throws {
            let client = freePort()
            let peer = freePort()
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "authtests-etcd-\(UUID().uuidString)")
            endpoint = "127.0.0.1:\(client)"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
            process.arguments = [
                "--name", "cmp", "--data-dir", directory.path, "--bcrypt-cost", "4",
                "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls",
                "http://127.0.0.1:\(client)",
                "--listen-peer-urls", "http://127.0.0.1:\(peer)", "--initial-advertise-peer-urls",
                "http://127.0.0.1:\(peer)",
                "--initial-cluster", "cmp=http://127.0.0.1:\(peer)",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try spawn(process)
            for _ in 0..<100 {
                if try ctl(["endpoint", "health"]).error == nil { return }
                Thread.sleep(forTimeInterval: 0.1)
            }
            stop()
            throw AuthConfigurationError("etcd did not start")
        }

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: directory)
        }

        /// Runs etcdctl; returns stdout and the error etcd answered with (gRPC code number and message), if any.
        func ctl(_ arguments: [String], user: String? = nil, input: String? = nil) throws -> (
            output: String, error: AuthError?
        ) {
            let ctl = Process()
            ctl.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
            ctl.arguments =
                ["--endpoints", endpoint, "--dial-timeout", "5s"] + (user.map { ["--user", $0] } ?? []) + arguments
            ctl.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
            let out = Pipe()
            let err = Pipe()
            let stdin = Pipe()
            ctl.standardOutput = out
            ctl.standardError = err
            ctl.standardInput = stdin
            try spawn(ctl)
            stdin.fileHandleForWriting.write(Data((input ?? "").utf8))
            try stdin.fileHandleForWriting.close()
            let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            ctl.waitUntilExit()
            guard ctl.terminationStatus != 0 else { return (output, nil) }
            let codes = [
                "Unknown": 2, "InvalidArgument": 3, "PermissionDenied": 7, "FailedPrecondition": 9,
                "Unauthenticated": 16,
            ]
            let message =
                errors.split(separator: "\n").last { $0.hasPrefix("Error: ") }.map { String($0.dropFirst(7)) }
                ?? errors
            let codeName = errors.components(separatedBy: "code = ").dropFirst().last?.split(separator: " ").first
            let code = codeName.flatMap { codes[String($0)] }.flatMap(AuthError.Code.init(rawValue:)) ?? .unknown
            return (output, AuthError(code, message))
        }
    }

    /// The core, driven the way the server will drive it.
    struct Core {
        var store = AuthStore()
        var tokens = SimpleTokenProvider()
        var index: UInt64 = 0

        /// etcdctl `--user name:password`: Authenticate, then the request at the revision the token resolves to.
        mutating func login(_ credentials: String?) throws(AuthError) -> AuthInfo? {
            guard let credentials else { return nil }
            let parts = credentials.split(separator: ":", maxSplits: 1).map(String.init)
            guard store.isEnabled else { return nil }
            _ = try store.checkPassword(name: parts[0], password: parts.count > 1 ? parts[1] : "")
            index += 1
            let token = try store.apply(
                .authenticate(name: parts[0], simpleTokenPrefix: tokens.generatePrefix()), requester: nil, index: index,
                tokens: &tokens)
            guard case .authenticate(let response) = token else { return nil }
            return try store.resolveIdentity(token: response.token, clientCertificateCommonName: nil, tokens: &tokens)
        }

        mutating func apply(_ request: AuthRequest, as credentials: String?) -> AuthError? {
            do throws(AuthError) {
                let requester = try login(credentials)
                index += 1
                _ = try store.apply(request, requester: requester, index: index, tokens: &tokens)
                return nil
            } catch {
                return error
            }
        }

        mutating func check(as credentials: String?, _ body: (AuthStore, AuthInfo?) throws -> Void) -> AuthError? {
            do {
                let requester = try login(credentials)
                try body(store, requester)
                return nil
            } catch let error as AuthError {
                return error
            } catch {
                return AuthError(.internal, "\(error)")
            }
        }
    }

    static func put(_ key: String) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = k(key)
        return request
    }

    static func added(_ name: String, _ password: String) -> Etcdserverpb_AuthUserAddRequest {
        userAddRequest(name, password: password)
    }

    static func range(_ key: String, _ end: Data = Data()) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = k(key)
        request.rangeEnd = end
        return request
    }

    @Test func sameAnswersAsEtcd() throws {
        let etcd = try Etcd()
        defer { etcd.stop() }
        var core = Core()
        let root = "root:rootpw"
        let alice = "alice:pw"
        var steps = 0
        var refusals = 0

        func same(
            _ arguments: [String], user: String? = nil, input: String? = nil,
            sourceLocation: SourceLocation = #_sourceLocation,
            _ ours: (inout Core) -> AuthError?
        ) throws {
            let theirs = try etcd.ctl(arguments, user: user, input: input).error
            let mine = ours(&core)
            #expect(mine == theirs, "etcdctl \(arguments.joined(separator: " "))", sourceLocation: sourceLocation)
            steps += 1
            if theirs != nil { refusals += 1 }
        }

        try same(["auth", "enable"]) { $0.apply(.authEnable, as: nil) }
        try same(["user", "add", "root:rootpw"]) { $0.apply(.userAdd(Self.added("root", "rootpw")), as: nil) }
        try same(["user", "grant-role", "root", "root"]) {
            $0.apply(.userGrantRole(grantRole("root", "root")), as: nil)
        }
        try same(["auth", "enable"]) { $0.apply(.authEnable, as: nil) }
        try same(["user", "add", "alice:pw"], user: root) { $0.apply(.userAdd(Self.added("alice", "pw")), as: root) }
        try same(["user", "add", "alice:pw"], user: root) { $0.apply(.userAdd(Self.added("alice", "pw")), as: root) }
        try same(["user", "add", "bob:pw"], user: alice) { $0.apply(.userAdd(Self.added("bob", "pw")), as: alice) }
        try same(["user", "add", "bob:pw"], user: "alice:wrong") {
            $0.apply(.userAdd(Self.added("bob", "pw")), as: "alice:wrong")
        }
        try same(["user", "add", "bob:pw"], user: "ghost:pw") {
            $0.apply(.userAdd(Self.added("bob", "pw")), as: "ghost:pw")
        }
        try same(["role", "add", "reader"], user: root) { $0.apply(.roleAdd(roleAdd("reader")), as: root) }
        try same(["role", "add", "reader"], user: root) { $0.apply(.roleAdd(roleAdd("reader")), as: root) }
        try same(["role", "grant-permission", "reader", "read", "/a", "/c"], user: root) {
            $0.apply(.roleGrantPermission(grantPermission("reader", permission(.read, k("/a"), k("/c")))), as: root)
        }
        try same(["role", "grant-permission", "reader", "readwrite", "--prefix", "p/"], user: root) {
            $0.apply(
                .roleGrantPermission(grantPermission("reader", permission(.readwrite, k("p/"), k("p0")))), as: root)
        }
        try same(["role", "grant-permission", "reader", "write", "--from-key", "x"], user: root) {
            $0.apply(.roleGrantPermission(grantPermission("reader", permission(.write, k("x"), fromKeyEnd))), as: root)
        }
        try same(["role", "grant-permission", "ghost", "read", "k"], user: root) {
            $0.apply(.roleGrantPermission(grantPermission("ghost", permission(.read, k("k")))), as: root)
        }
        try same(["user", "grant-role", "alice", "reader"], user: root) {
            $0.apply(.userGrantRole(grantRole("alice", "reader")), as: root)
        }
        try same(["user", "grant-role", "alice", "ghost"], user: root) {
            $0.apply(.userGrantRole(grantRole("alice", "ghost")), as: root)
        }
        try same(["user", "grant-role", "ghost", "reader"], user: root) {
            $0.apply(.userGrantRole(grantRole("ghost", "reader")), as: root)
        }

        // Keys, as alice.
        try same(["get", "/b"], user: alice) { $0.check(as: alice) { try $0.checkRange(Self.range("/b"), $1) } }
        try same(["put", "/b", "v"], user: alice) {
            $0.check(as: alice) { try $0.checkPut(Self.put("/b"), $1, leaseKeys: { _ in nil }) }
        }
        try same(["get", "/a", "/d"], user: alice) {
            $0.check(as: alice) { try $0.checkRange(Self.range("/a", k("/d")), $1) }
        }
        try same(["get", "--prefix", "p/"], user: alice) {
            $0.check(as: alice) { try $0.checkRange(Self.range("p/", k("p0")), $1) }
        }
        try same(["put", "p/q", "v"], user: alice) {
            $0.check(as: alice) { try $0.checkPut(Self.put("p/q"), $1, leaseKeys: { _ in nil }) }
        }
        try same(["get", "--from-key", "x"], user: alice) {
            $0.check(as: alice) { try $0.checkRange(Self.range("x", fromKeyEnd), $1) }
        }
        try same(["put", "y", "v"], user: alice) {
            $0.check(as: alice) { try $0.checkPut(Self.put("y"), $1, leaseKeys: { _ in nil }) }
        }
        try same(["del", "--prefix", "p/"], user: alice) {
            var request = Etcdserverpb_DeleteRangeRequest()
            request.key = k("p/")
            request.rangeEnd = k("p0")
            return $0.check(as: alice) { try $0.checkDeleteRange(request, $1) }
        }
        try same(["del", "--prev-kv", "x"], user: alice) {
            var request = Etcdserverpb_DeleteRangeRequest()
            request.key = k("x")
            request.prevKv = true
            return $0.check(as: alice) { try $0.checkDeleteRange(request, $1) }
        }
        try same(["txn"], user: alice, input: "\nput p/r v\n\nput /zz v\n\n") {
            var request = Etcdserverpb_TxnRequest()
            var success = Etcdserverpb_RequestOp()
            success.requestPut = Self.put("p/r")
            var failure = Etcdserverpb_RequestOp()
            failure.requestPut = Self.put("/zz")
            request.success = [success]
            request.failure = [failure]
            return $0.check(as: alice) { try $0.checkTxn(request, $1, leaseKeys: { _ in nil }) }
        }
        try same(["lease", "grant", "60"], user: alice) { $0.check(as: alice) { try $0.checkCall(.leaseGrant, $1) } }
        try same(["member", "list"], user: alice) { $0.check(as: alice) { try $0.checkCall(.memberList, $1) } }
        try same(["get", "/b"]) { $0.check(as: nil) { try $0.checkRange(Self.range("/b"), $1) } }

        // Reading users and roles.
        var getAlice = Etcdserverpb_AuthUserGetRequest()
        getAlice.name = "alice"
        var getRoot = Etcdserverpb_AuthUserGetRequest()
        getRoot.name = "root"
        var getReader = Etcdserverpb_AuthRoleGetRequest()
        getReader.role = "reader"
        var getGhost = Etcdserverpb_AuthRoleGetRequest()
        getGhost.role = "ghost"
        try same(["user", "get", "alice"], user: alice) { $0.apply(.userGet(getAlice), as: alice) }
        try same(["user", "get", "root"], user: alice) { $0.apply(.userGet(getRoot), as: alice) }
        try same(["role", "get", "reader"], user: alice) { $0.apply(.roleGet(getReader), as: alice) }
        try same(["role", "get", "ghost"], user: root) { $0.apply(.roleGet(getGhost), as: root) }
        try same(["user", "list"], user: alice) { $0.apply(.userList, as: alice) }
        try same(["role", "list"], user: alice) { $0.apply(.roleList, as: alice) }

        // The root rules and revocation errors.
        var deleteRootRole = Etcdserverpb_AuthRoleDeleteRequest()
        deleteRootRole.role = "root"
        var deleteRoot = Etcdserverpb_AuthUserDeleteRequest()
        deleteRoot.name = "root"
        try same(["role", "delete", "root"], user: root) { $0.apply(.roleDelete(deleteRootRole), as: root) }
        try same(["user", "delete", "root"], user: root) { $0.apply(.userDelete(deleteRoot), as: root) }
        try same(["user", "revoke-role", "root", "root"], user: root) {
            $0.apply(.userRevokeRole(revokeRole("root", "root")), as: root)
        }
        try same(["user", "revoke-role", "alice", "writer"], user: root) {
            $0.apply(.userRevokeRole(revokeRole("alice", "writer")), as: root)
        }
        try same(["role", "revoke-permission", "reader", "/zzz"], user: root) {
            $0.apply(.roleRevokePermission(revokePermission("reader", k("/zzz"))), as: root)
        }
        try same(["role", "revoke-permission", "reader", "/a", "/c"], user: root) {
            $0.apply(.roleRevokePermission(revokePermission("reader", k("/a"), k("/c"))), as: root)
        }
        try same(["get", "/b"], user: alice) { $0.check(as: alice) { try $0.checkRange(Self.range("/b"), $1) } }

        // The same listings and permissions, in the same order.
        let users = try etcd.ctl(["user", "list"], user: root).output.split(separator: "\n").map(String.init)
        #expect(users == core.store.userList().users)
        let json = try etcd.ctl(["-w", "json", "role", "get", "reader"], user: root).output
        let perms = try #require(
            (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["perm"] as? [[String: Any]])
        let theirPerms = perms.map { perm in
            permission(
                Authpb_Permission.TypeEnum(rawValue: perm["permType"] as? Int ?? 0) ?? .read,
                Data(base64Encoded: perm["key"] as? String ?? "") ?? Data(),
                Data(base64Encoded: perm["range_end"] as? String ?? "") ?? Data())
        }
        #expect(theirPerms == core.store.role(named: "reader")?.keyPermission)

        // Password change and disabling.
        try same(["user", "passwd", "alice", "--interactive=false"], user: root, input: "pw2\n") {
            var change = Etcdserverpb_AuthUserChangePasswordRequest()
            change.name = "alice"
            change.password = "pw2"
            try! AuthProposal.prepare(&change, hasher: testHasher)
            return $0.apply(.userChangePassword(change), as: root)
        }
        try same(["get", "/b"], user: alice) { $0.check(as: alice) { try $0.checkRange(Self.range("/b"), $1) } }
        try same(["auth", "disable"], user: alice) { $0.apply(.authDisable, as: alice) }
        try same(["auth", "disable"], user: root) { $0.apply(.authDisable, as: root) }
        try same(["put", "/zz", "v"]) {
            $0.check(as: nil) { try $0.checkPut(Self.put("/zz"), $1, leaseKeys: { _ in nil }) }
        }
        try same(["user", "list"]) { $0.apply(.userList, as: nil) }
        print("EtcdComparisonTests: \(steps) steps (\(refusals) refused by etcd) compared with etcd 3.4.23")
        #expect(refusals >= 20, "the story exercises etcd's errors, not only successes")
    }
}
