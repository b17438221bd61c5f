package base

import (
	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

func infoToProto(i *Info) *basepb.InfoResponse {
	return &basepb.InfoResponse{
		Kind:       string(i.Kind),
		Name:       i.Name,
		Version:    i.Version,
		ApiVersion: int32(i.APIVersion),
	}
}

func infoFromProto(r *basepb.InfoResponse) *Info {
	return &Info{
		Kind:       Kind(r.GetKind()),
		Name:       r.GetName(),
		Version:    r.GetVersion(),
		APIVersion: int(r.GetApiVersion()),
	}
}

func problemsToProto(ps []Problem) []*basepb.Problem {
	out := make([]*basepb.Problem, len(ps))
	for i, p := range ps {
		out[i] = &basepb.Problem{Path: p.Path, Message: p.Message}
	}
	return out
}

// configErrorFromProto returns nil when there are no problems.
func configErrorFromProto(ps []*basepb.Problem) error {
	if len(ps) == 0 {
		return nil
	}
	ce := &ConfigError{Problems: make([]Problem, len(ps))}
	for i, p := range ps {
		ce.Problems[i] = Problem{Path: p.GetPath(), Message: p.GetMessage()}
	}
	return ce
}
