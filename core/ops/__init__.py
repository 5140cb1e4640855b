"""Operations: usage and cost, budgets, retention: what keeps a deployment healthy and within its promises."""
