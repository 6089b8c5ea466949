package storage

import "crypto/sha256"

// Digest returns the SHA-256 of every key and value in r, in ascending key
// order, each preceded by its length. Two nodes whose readers have equal
// digests hold byte-for-byte the same state.
func Digest(r Reader) ([32]byte, error) {
	hash := sha256.New()
	var entry []byte
	err := r.Scan(nil, nil, false, func(key, value []byte) error {
		entry = appendEntry(entry[:0], key, value)
		_, err := hash.Write(entry)
		return err
	})

	var sum [32]byte
	if err != nil {
		return sum, err
	}
	hash.Sum(sum[:0])
	return sum, nil
}
