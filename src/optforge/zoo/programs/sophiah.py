def sophiah(w, g, m, hm, h, lr, step, beta1=0.96, beta2=0.99, rho=0.01, eps=1e-12, wd=0.0,
            k=10):
    "Sophia-H: momentum over a Hutchinson Hessian EMA (updated every k steps), clipped at rho."
    m = interp(m, g, 1 - beta1)
    hm = interp(hm, h, (1 - beta2) * lt(mod(step - 1, k), 0.5))
    update = lr * (clip(m / maximum(hm, eps), rho) + wd * w)
    return update, m, hm
