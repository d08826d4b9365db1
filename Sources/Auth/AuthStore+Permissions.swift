#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The primitive permission checks every request check is built from (etcd 3.5's `isOpPermitted` and
/// `IsAdminPermitted`). All of them pass while auth is off.
extension AuthStore {
    /// The two kinds of key permission a request can need.
    public enum Access: Sendable {
        case read, write
    }

    /// etcd's `IsRangePermitted`: may `info` read `[key, rangeEnd)` (an empty `rangeEnd` is the single key, `"\0"`
    /// every key from `key` on)?
    public func isRangePermitted(_ info: AuthInfo?, key: Data, rangeEnd: Data) throws(AuthError) {
        try checkKeys(info, key: key, rangeEnd: rangeEnd, access: .read)
    }

    /// etcd's `IsPutPermitted`: may `info` write `key`?
    public func isPutPermitted(_ info: AuthInfo?, key: Data) throws(AuthError) {
        try checkKeys(info, key: key, rangeEnd: Data(), access: .write)
    }

    /// etcd's `IsDeleteRangePermitted`: may `info` write every key of `[key, rangeEnd)`?
    public func isDeleteRangePermitted(_ info: AuthInfo?, key: Data, rangeEnd: Data) throws(AuthError) {
        try checkKeys(info, key: key, rangeEnd: rangeEnd, access: .write)
    }

    /// etcd's `isOpPermitted`, in etcd's order: no identity (revision 0) is `user name is empty`; a request admitted
    /// at an older auth revision than the store's is `revision of auth store is old` (the client re-authenticates
    /// and retries); an unknown user is denied; role `root` may do anything; everyone else needs the merged
    /// permission of their roles.
    public func checkKeys(_ info: AuthInfo?, key: Data, rangeEnd: Data, access: Access) throws(AuthError) {
        guard isEnabled else { return }
        guard let info, info.revision != 0 else { throw .userEmpty }
        guard info.revision >= revision else { throw .authOldRevision }
        let name = Data(info.username.utf8)
        guard let user = users[name] else { throw .permissionDenied }
        if user.hasRootRole { return }
        guard let cached = permissions[name] else { throw .permissionDenied }
        let set = access == .read ? cached.read : cached.write
        let begin = [UInt8](key)
        let permitted: Bool
        if rangeEnd.isEmpty {
            permitted = set.containsKey(begin)
        } else if rangeEnd.count == 1 && rangeEnd.first == 0 {
            permitted = set.containsRange(from: begin, to: nil)
        } else {
            permitted = set.containsRange(from: begin, to: [UInt8](rangeEnd))
        }
        guard permitted else { throw .permissionDenied }
    }

    /// etcd's `IsAdminPermitted`: is `info` a user holding role `root`? No identity is `user name is empty`, a
    /// user that does not exist is `user name not found`. Unlike key checks, the auth revision is not compared.
    public func isAdminPermitted(_ info: AuthInfo?) throws(AuthError) {
        guard isEnabled else { return }
        guard let info, !info.username.isEmpty else { throw .userEmpty }
        guard let user = user(named: info.username) else { throw .userNotFound }
        guard user.hasRootRole else { throw .permissionDenied }
    }

    /// etcd's `requireAuthInfo`: while auth is on, the request must come with some identity (a valid token or a
    /// client certificate); what it may do is not checked.
    public func requireAuthInfo(_ info: AuthInfo?) throws(AuthError) {
        guard isEnabled else { return }
        guard info != nil else { throw .userEmpty }
    }
}
