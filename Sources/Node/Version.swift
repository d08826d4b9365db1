/// Versions a member reports. Quorum speaks etcd's v3 API as of 3.5 (with the 3.6 additions it implements),
/// and reports that as its etcd version so clients enable the matching features.
public enum Version {
    public static let quorum = "0.1.0"
    public static let etcdServer = "3.5.0"
    public static let etcdCluster = "3.5.0"
    public static let storage = "3.5.0"
    public static let apiVersion = "3.5"
}
