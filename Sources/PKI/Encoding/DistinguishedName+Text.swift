import X509

extension DistinguishedName {
    /// The first common name, the field operators and etcd's RBAC look at.
    public var commonName: String? {
        for rdn in self {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return String(attribute.value) ?? attribute.value.description
            }
        }
        return nil
    }

}
