import EtcdProto
import Foundation
import Testing

@testable import Auth

/// etcd's backend encoding of the store, identity resolution, and the auth revision rules.
@Suite struct PersistenceAndIdentityTests {
    func populatedStore() throws -> AuthStore {
        var tokens = NopTokenProvider()
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.userAdd(userAddRequest("svc", noPassword: true))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.roleGrantPermission(grantPermission("reader", permission(.read, k("a"), k("c"))))
        _ = try store.roleGrantPermission(grantPermission("reader", permission(.readwrite, k("x"), fromKeyEnd)))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        return store
    }

    @Test func roundTripsThroughEtcdsBuckets() throws {
        let store = try populatedStore()
        let entries = try store.backendEntries()
        let loaded = try AuthStore(backendEntries: entries)
        #expect(loaded == store)
        let alice = AuthInfo(username: "alice", revision: loaded.revision)
        #expect(authError { try loaded.isRangePermitted(alice, key: k("b"), rangeEnd: Data()) } == nil, "cache rebuilt")
        #expect(authError { try loaded.isPutPermitted(alice, key: k("b")) } == .permissionDenied)
        #expect(try loaded.backendEntries() == entries, "deterministic order")
    }

    @Test func bytesAreEtcds() throws {
        let store = try populatedStore()
        let entries = try store.backendEntries()
        #expect(entries.map(\.bucket) == ["auth", "auth", "authUsers", "authUsers", "authUsers", "authRoles"])
        #expect(entries[0].key == k("authEnabled") && entries[0].value == Data([1]))
        #expect(entries[1].key == k("authRevision"))
        #expect(entries[1].value == Data([0, 0, 0, 0, 0, 0, 0, UInt8(store.revision)]), "8 bytes big-endian")
        #expect(entries[2...4].map(\.key) == [k("alice"), k("root"), k("svc")])

        // A no-password user: name (field 1), roles none, options (field 4) {no_password: true}.
        let svc = try #require(entries.first { $0.key == k("svc") })
        #expect(svc.value == Data([0x0a, 3]) + k("svc") + Data([0x22, 2, 0x08, 1]))
        // A role: name (field 1), then permissions (field 2) {permType (1), key (2), range_end (3)}.
        let reader = entries[5]
        #expect(reader.key == k("reader"))
        let firstPermission = Data([0x12, 6, 0x12, 1, 0x61, 0x1a, 1, 0x63])
        let secondPermission = Data([0x12, 8, 0x08, 2, 0x12, 1, 0x78, 0x1a, 1, 0x00])
        #expect(reader.value == Data([0x0a, 6]) + k("reader") + firstPermission + secondPermission)
    }

    @Test func storesNeverPrintTheirHashes() throws {
        let store = try populatedStore()
        let printed = "\(store) \(String(reflecting: store))"
        #expect(
            printed
                == "AuthStore(enabled: true, revision: \(store.revision), users: [\"alice\", \"root\", \"svc\"], roles: [\"reader\"]) "
                + "\(store)")
        #expect(!printed.contains("$2b$"))
    }

    @Test func loadsWhatEtcdWrites() throws {
        var root = Authpb_User()
        root.name = k("root")
        root.password = Data("$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga".utf8)
        root.roles = ["root"]
        let entries = [
            AuthBackendEntry(bucket: "auth", key: k("authEnabled"), value: Data([1])),
            AuthBackendEntry(bucket: "auth", key: k("authRevision"), value: Data([0, 0, 0, 0, 0, 0, 1, 0])),
            AuthBackendEntry(bucket: "authUsers", key: k("root"), value: try root.serializedBytes()),
            AuthBackendEntry(bucket: "key", key: k("ignored"), value: Data([1, 2, 3])),
        ]
        let store = try AuthStore(backendEntries: entries)
        #expect(store.isEnabled && store.revision == 256)
        #expect(!root.hasOptions, "etcd 3.2 wrote users without options")
        #expect(try store.checkPassword(name: "root", password: "allmine") == 256, "an etcd ($2a$) hash logs in")

        let empty = try AuthStore(backendEntries: [])
        #expect(empty == AuthStore(), "a missing revision starts at 1, as etcd commits one at start")
        let disabled = try AuthStore(backendEntries: [
            AuthBackendEntry(bucket: "auth", key: k("authEnabled"), value: Data([2]))
        ])
        #expect(!disabled.isEnabled, "only the byte 1 means enabled")
        #expect(throws: AuthError.internal("auth: corrupt user entry")) {
            try AuthStore(backendEntries: [AuthBackendEntry(bucket: "authUsers", key: k("x"), value: Data([0xff]))])
        }
    }

    @Test func identityTokenWinsThenCertificate() throws {
        let clock = ManualClock()
        var tokens = SimpleTokenProvider(clock: clock.authClock)
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        let token = try store.authenticate(
            name: "alice", simpleTokenPrefix: "tttttttttttttttt", index: 5, tokens: &tokens)

        let byToken = try store.resolveIdentity(
            token: token.token, clientCertificateCommonName: "root", tokens: &tokens)
        #expect(byToken == AuthInfo(username: "alice", revision: store.revision))
        let bearer = try store.resolveIdentity(
            token: "Bearer " + token.token, clientCertificateCommonName: nil, tokens: &tokens)
        #expect(bearer?.username == "alice")
        #expect(
            authError {
                _ = try store.resolveIdentity(token: "bogus.1", clientCertificateCommonName: "root", tokens: &tokens)
            }
                == .invalidAuthToken, "a bad token is not rescued by a certificate")
        #expect(
            authError { _ = try store.resolveIdentity(token: "", clientCertificateCommonName: nil, tokens: &tokens) }
                == .invalidAuthToken)
        #expect(
            try store.resolveIdentity(token: nil, clientCertificateCommonName: "svc", tokens: &tokens)
                == AuthInfo(username: "svc", revision: store.revision))
        #expect(try store.resolveIdentity(token: nil, clientCertificateCommonName: nil, tokens: &tokens) == nil)
        #expect(AuthError.invalidAuthToken.code == .unauthenticated)

        _ = store.authDisable(tokens: &tokens)
        #expect(
            try store.resolveIdentity(token: "bogus", clientCertificateCommonName: "x", tokens: &tokens) == nil,
            "auth off: no identity, no checks")
    }

    @Test func requestsAdmittedAtAnOlderRevisionAreRefused() throws {
        var tokens = NopTokenProvider()
        var store = try populatedStore()
        let admitted = AuthInfo(username: "alice", revision: store.revision)
        #expect(authError { try store.isRangePermitted(admitted, key: k("b"), rangeEnd: Data()) } == nil)
        #expect(authError { try store.ensureRevisionUnchanged(admitted) } == nil)

        // Any auth change in between (here an unrelated role) makes the admitted revision old.
        _ = try store.roleAdd(roleAdd("unrelated"))
        #expect(authError { try store.isRangePermitted(admitted, key: k("b"), rangeEnd: Data()) } == .authOldRevision)
        #expect(authError { try store.ensureRevisionUnchanged(admitted) } == .authOldRevision)
        #expect(
            authError { try store.isAdminPermitted(AuthInfo(username: "root", revision: 1)) } == nil,
            "admin checks ignore it")
        #expect(
            authError {
                try store.isRangePermitted(AuthInfo(username: "alice", revision: 0), key: k("b"), rangeEnd: Data())
            } == .userEmpty)
        #expect(
            authError {
                try store.isRangePermitted(AuthInfo(username: "alice", revision: 1_000), key: k("b"), rangeEnd: Data())
            } == nil, "newer is fine")
        #expect(
            authError {
                try store.isRangePermitted(AuthInfo(username: "ghost", revision: 1_000), key: k("b"), rangeEnd: Data())
            } == .permissionDenied)

        let checked = try store.checkLeaseTimeToLive(
            AuthInfo(username: "alice", revision: store.revision), leaseKeys: [k("b")])
        #expect(authError { try store.ensureRevisionUnchanged(since: checked) } == nil)
        _ = try store.roleAdd(roleAdd("another"))
        #expect(authError { try store.ensureRevisionUnchanged(since: checked) } == .authOldRevision)
        _ = store.authDisable(tokens: &tokens)
        #expect(authError { try store.ensureRevisionUnchanged(since: checked) } == nil, "auth off: nothing to protect")
    }

    @Test func jwtIdentityCarriesItsOwnRevision() throws {
        let clock = ManualClock()
        var tokens = JWTTokenProviderFixtures.hmacProvider(clock: clock.authClock)
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.roleGrantPermission(grantPermission("reader", permission(.read, k("b"))))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        let token = try store.authenticate(name: "alice", simpleTokenPrefix: "", index: 9, tokens: &tokens).token
        let issuedAt = store.revision

        let before = try #require(
            try store.resolveIdentity(token: token, clientCertificateCommonName: nil, tokens: &tokens))
        #expect(before.revision == issuedAt)
        #expect(authError { try store.isRangePermitted(before, key: k("b"), rangeEnd: Data()) } == nil)
        _ = try store.roleAdd(roleAdd("later"))
        let after = try #require(
            try store.resolveIdentity(token: token, clientCertificateCommonName: nil, tokens: &tokens))
        #expect(after.revision == issuedAt, "a JWT keeps the revision it was issued at")
        #expect(authError { try store.isRangePermitted(after, key: k("b"), rangeEnd: Data()) } == .authOldRevision)
    }
}
