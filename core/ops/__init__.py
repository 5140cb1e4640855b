"""Operations: what keeps a deployment healthy and within its promises (retention, …)."""
