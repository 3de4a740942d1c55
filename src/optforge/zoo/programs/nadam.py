def nadam(w, g, m, v, mu_prod, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0,
          momentum_decay=0.004):
    "NAdam with Dozat's momentum schedule mu_t = beta1 (1 - 0.96^(t psi) / 2)."
    d = g + wd * w
    mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_prod = where(step - 1, mu_prod, 1) * mu
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    denom = sqrt(v / (1 - beta2 ** step)) + eps
    update = (lr * (1 - mu) / (1 - mu_prod) * d / denom
              + lr * mu_next / (1 - mu_prod * mu_next) * m / denom)
    return update, m, v, mu_prod
