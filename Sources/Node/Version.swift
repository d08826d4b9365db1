/// Versions a member reports. Quorum speaks etcd's v3 API as of 3.5 (with the 3.6 additions it implements),
/// and reports that as its etcd version so clients enable the matching features. The server version is 3.5.13
/// because Quorum's watch behaves as etcd's does from that release on (progress notifications never ahead of
/// the events sent, `RequestProgress` answered in order once the stream is synced): kube-apiserver turns on
/// consistent reads from its watch cache and WatchList only for etcd >= 3.5.13.
public enum Version {
    public static let quorum = "0.1.0"
    public static let etcdServer = "3.5.13"
    public static let etcdCluster = "3.5.0"
    public static let storage = "3.5.0"
    public static let apiVersion = "3.5"
}
