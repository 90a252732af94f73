package apitype

// GerritSource is the status of one [[gerrit]] stream. Owned by the gerrit package.
type GerritSource struct {
	Name string `json:"name"`
}
