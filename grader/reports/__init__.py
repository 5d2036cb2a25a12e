"""What eval, calibration and scorecard reports share: the HTML scaffold, figures, writing, token prices."""
