import EtcdProto
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import Auth

/// A wall clock the test moves by hand.
final class ManualClock: Sendable {
    private let current: Mutex<Duration>

    init(unixSeconds: Int64 = 1_700_000_000) { current = Mutex(.seconds(unixSeconds)) }

    func advance(by duration: Duration) { current.withLock { $0 += duration } }

    var authClock: AuthClock { AuthClock { [self] in current.withLock { $0 } } }

    var unixSeconds: Int64 { current.withLock { $0.components.seconds } }
}

/// The bytes of a key written as text.
func k(_ text: String) -> Data { Data(text.utf8) }

/// clientv3's `GetPrefixRangeEnd`: the smallest key above every key with this prefix ("\0" for an all-0xff prefix).
func prefixEnd(_ prefix: Data) -> Data {
    var bytes = [UInt8](prefix)
    while let last = bytes.last {
        if last < 0xff {
            bytes[bytes.count - 1] = last + 1
            return Data(bytes)
        }
        bytes.removeLast()
    }
    return Data([0])
}

/// `"\0"`: as a range end, "every key from the start key on".
let fromKeyEnd = Data([0])

/// The cheapest bcrypt cost, so that tests that are not about bcrypt stay fast.
let testHasher = Bcrypt(cost: 4)

/// A UserAdd request prepared as the proposing member prepares it (password hashed and base64-encoded).
func userAddRequest(_ name: String, password: String = "pass", noPassword: Bool = false, seed: UInt64 = 1)
    -> Etcdserverpb_AuthUserAddRequest
{
    var request = Etcdserverpb_AuthUserAddRequest()
    request.name = name
    request.password = password
    if noPassword { request.options.noPassword = true }
    var generator = SeededRandom(seed: seed)
    try! AuthProposal.prepare(&request, hasher: testHasher, using: &generator)
    return request
}

func grantRole(_ user: String, _ role: String) -> Etcdserverpb_AuthUserGrantRoleRequest {
    var request = Etcdserverpb_AuthUserGrantRoleRequest()
    request.user = user
    request.role = role
    return request
}

func revokeRole(_ user: String, _ role: String) -> Etcdserverpb_AuthUserRevokeRoleRequest {
    var request = Etcdserverpb_AuthUserRevokeRoleRequest()
    request.name = user
    request.role = role
    return request
}

func roleAdd(_ name: String) -> Etcdserverpb_AuthRoleAddRequest {
    var request = Etcdserverpb_AuthRoleAddRequest()
    request.name = name
    return request
}

func permission(_ type: Authpb_Permission.TypeEnum, _ key: Data, _ rangeEnd: Data = Data()) -> Authpb_Permission {
    var permission = Authpb_Permission()
    permission.permType = type
    permission.key = key
    permission.rangeEnd = rangeEnd
    return permission
}

func grantPermission(_ role: String, _ permission: Authpb_Permission) -> Etcdserverpb_AuthRoleGrantPermissionRequest {
    var request = Etcdserverpb_AuthRoleGrantPermissionRequest()
    request.name = role
    request.perm = permission
    return request
}

func revokePermission(_ role: String, _ key: Data, _ rangeEnd: Data = Data())
    -> Etcdserverpb_AuthRoleRevokePermissionRequest
{
    var request = Etcdserverpb_AuthRoleRevokePermissionRequest()
    request.role = role
    request.key = key
    request.rangeEnd = rangeEnd
    return request
}

/// Runs `body` and returns the AuthError it threw, or nil (another error fails the test).
func authError(_ body: () throws -> Void) -> AuthError? {
    do {
        try body()
        return nil
    } catch let error as AuthError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// A store with user `root` holding role `root`, ready to enable.
func storeWithRoot(tokens: inout some TokenProvider) throws -> AuthStore {
    var store = AuthStore()
    _ = try store.userAdd(userAddRequest("root", password: "rootpw"))
    _ = try store.userGrantRole(grantRole("root", "root"))
    return store
}

/// A store with root and auth enabled.
func enabledStore(tokens: inout some TokenProvider) throws -> AuthStore {
    var store = try storeWithRoot(tokens: &tokens)
    _ = try store.authEnable(tokens: &tokens)
    return store
}

/// Runs a command line, returning its exit status and standard output (for openssl and python3 interop).
@discardableResult
func run(_ arguments: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    let inputPipe = Pipe()
    if input != nil { process.standardInput = inputPipe }
    try spawn(process)
    if let input {
        inputPipe.fileHandleForWriting.write(input)
        try inputPipe.fileHandleForWriting.close()
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
