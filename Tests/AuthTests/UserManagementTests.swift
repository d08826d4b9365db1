import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// UserAdd, UserDelete, UserChangePassword, UserGrantRole, UserRevokeRole, UserGet and UserList, with etcd's
/// errors and revision bumps.
@Suite struct UserManagementTests {
    @Test func aNewStoreIsDisabledAtRevisionOne() {
        let store = AuthStore()
        #expect(!store.isEnabled)
        #expect(store.revision == 1)
        #expect(store.userList().users.isEmpty)
        #expect(store.roleList().roles.isEmpty)
    }

    @Test func userAddStoresTheHashAndBumpsTheRevision() throws {
        var store = AuthStore()
        _ = try store.userAdd(userAddRequest("alice", password: "wonderland"))
        #expect(store.revision == 2)
        let alice = try #require(store.user(named: "alice"))
        #expect(alice.name == k("alice"))
        #expect(alice.hasOptions && !alice.options.noPassword)
        #expect(alice.password.starts(with: Array("$2b$04$".utf8)))
        #expect(Bcrypt.verify(password: "wonderland", hash: alice.password))
        #expect(!Bcrypt.verify(password: "looking-glass", hash: alice.password))
    }

    @Test func userAddErrors() throws {
        var store = AuthStore()
        #expect(authError { _ = try store.userAdd(userAddRequest("")) } == .userEmpty)
        _ = try store.userAdd(userAddRequest("alice"))
        #expect(authError { _ = try store.userAdd(userAddRequest("alice")) } == .userAlreadyExist)
        #expect(AuthError.userAlreadyExist.message == "etcdserver: user name already exists")
        #expect(AuthError.userAlreadyExist.code.rawValue == 9)
        #expect(store.revision == 2, "failed operations do not bump the revision")
    }

    @Test func noPasswordUsersStoreNoPassword() throws {
        var store = AuthStore()
        var request = Etcdserverpb_AuthUserAddRequest()
        request.name = "svc"
        request.password = "ignored"
        request.options.noPassword = true
        try AuthProposal.prepare(&request, hasher: testHasher)
        #expect(request.hashedPassword.isEmpty && request.password == "ignored", "no-password users are not hashed")
        _ = try store.userAdd(request)
        let svc = try #require(store.user(named: "svc"))
        #expect(svc.password.isEmpty)
        #expect(svc.options.noPassword)
    }

    @Test func plaintextPasswordsNeverReachTheStore() {
        var store = AuthStore()
        var request = Etcdserverpb_AuthUserAddRequest()
        request.name = "alice"
        request.password = "plaintext"
        #expect(authError { _ = try store.userAdd(request) } == .passwordNotHashed)
        request.password = ""
        request.hashedPassword = "not base64!"
        #expect(authError { _ = try store.userAdd(request) } == .noPasswordUser)
        #expect(AuthError.noPasswordUser.code == .unknown)
        #expect(store.revision == 1)
    }

    @Test func userDeleteRemovesTheUserAndItsTokens() throws {
        let clock = ManualClock()
        var tokens = SimpleTokenProvider(clock: clock.authClock)
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        let token = try store.authenticate(
            name: "alice", simpleTokenPrefix: "abcdefghijklmnop", index: 7, tokens: &tokens)
        #expect(tokens.info(token: token.token, currentRevision: store.revision) != nil)

        var delete = Etcdserverpb_AuthUserDeleteRequest()
        delete.name = "alice"
        let before = store.revision
        _ = try store.userDelete(delete, tokens: &tokens)
        #expect(store.revision == before + 1)
        #expect(store.user(named: "alice") == nil)
        #expect(tokens.info(token: token.token, currentRevision: store.revision) == nil)
        #expect(authError { _ = try store.userDelete(delete, tokens: &tokens) } == .userNotFound)
    }

    @Test func rootCannotBeDeletedWhileAuthIsOn() throws {
        var tokens = SimpleTokenProvider()
        var store = try enabledStore(tokens: &tokens)
        var delete = Etcdserverpb_AuthUserDeleteRequest()
        delete.name = "root"
        #expect(authError { _ = try store.userDelete(delete, tokens: &tokens) } == .invalidAuthMgmt)
        _ = store.authDisable(tokens: &tokens)
        _ = try store.userDelete(delete, tokens: &tokens)
        #expect(store.user(named: "root") == nil)
    }

    @Test func changePasswordReplacesTheHashKeepsRolesAndEndsTokens() throws {
        var tokens = SimpleTokenProvider(clock: ManualClock().authClock)
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice", password: "old"))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        let token = try store.authenticate(
            name: "alice", simpleTokenPrefix: "ABCDEFGHIJKLMNOP", index: 9, tokens: &tokens)

        var change = Etcdserverpb_AuthUserChangePasswordRequest()
        change.name = "alice"
        change.password = "new"
        var generator = SeededRandom(seed: 42)
        try AuthProposal.prepare(&change, hasher: testHasher, using: &generator)
        #expect(change.password.isEmpty && !change.hashedPassword.isEmpty)
        let before = store.revision
        _ = try store.userChangePassword(change, tokens: &tokens)
        #expect(store.revision == before + 1)
        let alice = try #require(store.user(named: "alice"))
        #expect(Bcrypt.verify(password: "new", hash: alice.password))
        #expect(!Bcrypt.verify(password: "old", hash: alice.password))
        #expect(alice.roles == ["reader"])
        #expect(tokens.info(token: token.token, currentRevision: store.revision) == nil)
        #expect(try store.checkPassword(name: "alice", password: "new") == store.revision)
        #expect(authError { _ = try store.checkPassword(name: "alice", password: "old") } == .authFailed)

        change.name = "nobody"
        #expect(authError { _ = try store.userChangePassword(change, tokens: &tokens) } == .userNotFound)
    }

    @Test func changePasswordOfANoPasswordUserKeepsNoPassword() throws {
        var tokens = NopTokenProvider()
        var store = AuthStore()
        _ = try store.userAdd(userAddRequest("svc", noPassword: true))
        var change = Etcdserverpb_AuthUserChangePasswordRequest()
        change.name = "svc"
        change.password = "secret"
        try AuthProposal.prepare(&change, hasher: testHasher)
        _ = try store.userChangePassword(change, tokens: &tokens)
        #expect(store.user(named: "svc")?.password.isEmpty == true)
        #expect(store.revision == 3)
    }

    @Test func grantRoleKeepsRolesSortedAndIsIdempotent() throws {
        var store = AuthStore()
        _ = try store.userAdd(userAddRequest("alice"))
        for role in ["zeta", "alpha", "Mid"] { _ = try store.roleAdd(roleAdd(role)) }
        for role in ["zeta", "alpha", "Mid"] { _ = try store.userGrantRole(grantRole("alice", role)) }
        #expect(store.user(named: "alice")?.roles == ["Mid", "alpha", "zeta"], "byte order: uppercase first")
        let revision = store.revision
        _ = try store.userGrantRole(grantRole("alice", "alpha"))
        #expect(store.revision == revision, "granting a held role changes nothing")

        #expect(authError { _ = try store.userGrantRole(grantRole("bob", "alpha")) } == .userNotFound)
        #expect(authError { _ = try store.userGrantRole(grantRole("alice", "ghost")) } == .roleNotFound)
        _ = try store.userGrantRole(grantRole("alice", "root"))
        #expect(store.user(named: "alice")?.roles.contains("root") == true, "role root need not exist")
        #expect(store.role(named: "root") == nil)
    }

    @Test func revokeRoleAndTheRootRule() throws {
        var tokens = NopTokenProvider()
        var store = try storeWithRoot(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        let revision = store.revision
        _ = try store.userRevokeRole(revokeRole("alice", "reader"))
        #expect(store.revision == revision + 1)
        #expect(store.user(named: "alice")?.roles == [])
        #expect(authError { _ = try store.userRevokeRole(revokeRole("alice", "reader")) } == .roleNotGranted)
        #expect(authError { _ = try store.userRevokeRole(revokeRole("bob", "reader")) } == .userNotFound)

        _ = try store.authEnable(tokens: &tokens)
        #expect(authError { _ = try store.userRevokeRole(revokeRole("root", "root")) } == .invalidAuthMgmt)
        _ = store.authDisable(tokens: &tokens)
        _ = try store.userRevokeRole(revokeRole("root", "root"))
        #expect(store.user(named: "root")?.roles == [])
    }

    @Test func userGetAndUserList() throws {
        var store = AuthStore()
        for name in ["carol", "Bob", "alice", "ábc"] { _ = try store.userAdd(userAddRequest(name)) }
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        var get = Etcdserverpb_AuthUserGetRequest()
        get.name = "alice"
        #expect(try store.userGet(get).roles == ["reader"])
        get.name = "dave"
        #expect(authError { _ = try store.userGet(get) } == .userNotFound)
        #expect(store.userList().users == ["Bob", "alice", "carol", "ábc"], "sorted by bytes as bbolt iterates")
    }

    @Test func namesAreBytesNotCanonicalStrings() throws {
        var store = AuthStore()
        _ = try store.userAdd(userAddRequest("caf\u{E9}"))
        _ = try store.userAdd(userAddRequest("cafe\u{301}"))
        #expect(store.userList().users.count == 2, "etcd keeps differently encoded names apart")
    }
}
