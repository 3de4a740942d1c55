def lars(w, g, buf, lr, momentum=0.9, dampening=0.0, wd=0.0, eta=1e-3):
    "LARS: momentum SGD on (g + wd w) scaled by eta ||w|| / (||g|| + wd ||w||); vectors unscaled."
    matrix = gt(numel(col_mean(w)), 1)
    wn = norm(w)
    den = norm(g) + wd * wn
    ratio = where(wn, where(den, eta * wn / den, 1), 1)
    d = where(matrix, (g + wd * w) * ratio, g)
    buf = momentum * buf + (1 - dampening) * d
    update = lr * buf
    return update, buf
