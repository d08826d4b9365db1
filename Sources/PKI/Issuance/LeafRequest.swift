import Foundation

/// Everything that distinguishes one leaf certificate from another.
public struct LeafRequest: Sendable, Equatable {
    public var names: SubjectNames
    public var profile: LeafProfile
    public var validity: TimeInterval
    public var keyAlgorithm: KeyAlgorithm
    /// Optional subject organization, e.g. a group a client certificate should belong to.
    public var organization: String?

    public init(
        names: SubjectNames,
        profile: LeafProfile,
        validity: TimeInterval = IssuanceDefaults.leafValidity,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        organization: String? = nil
    ) {
        self.names = names
        self.profile = profile
        self.validity = validity
        self.keyAlgorithm = keyAlgorithm
        self.organization = organization
    }

    /// A client certificate request: the common name is the etcd user (`root`, `kube-apiserver`), no SANs.
    public static func client(
        user: String,
        validity: TimeInterval = IssuanceDefaults.leafValidity,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        organization: String? = nil
    ) -> LeafRequest {
        LeafRequest(
            names: SubjectNames(commonName: user),
            profile: .client,
            validity: validity,
            keyAlgorithm: keyAlgorithm,
            organization: organization
        )
    }
}
