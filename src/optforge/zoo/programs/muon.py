def muon(w, g, buf, lr, momentum=0.95, nesterov=1.0, wd=0.0):
    "Muon: Newton-Schulz-orthogonalised (Nesterov) momentum, scaled by sqrt(max(1, R / C))."
    buf = interp(buf, g, 1 - momentum)
    d = where(nesterov, interp(g, buf, momentum), buf)
    scale = sqrt(maximum(1, numel(row_mean(g)) / numel(col_mean(g))))
    update = lr * (scale * orthogonalize(d) + wd * w)
    return update, buf
