# -*- coding: utf-8 -*-
"""
@article{Kimanius2021,
title = "Exploiting prior knowledge about biological macromolecules in cryo-EM structure determination",
journal = "IUCrJ",
volume = "8",
number = "1",
pages = "60--75",
year = "2021",
doi = "https://doi.org/10.1107/S2052252520014384",
url = "https://journals.iucr.org/m/issues/2021/01/00/fq5015/",
author = "Kimanius, Dari and Zickert, Gustav and Nakane, Takanori and Adler, Jonas and Lunz, Sebastian and Schönlieb, Carola-Bibiane and Öktem, Ozan and Scheres, Sjors H. W.",
}

@article{Scheres2012b,
title = "RELION: Implementation of a Bayesian approach to cryo-EM structure determination",
journal = "J. Struct. Biol.",
volume = "180",
number = "3",
pages = "519--530",
year = "2012",
doi = "https://doi.org/10.1016/j.jsb.2012.09.006",
author = "Scheres, Sjors H. W.",
}

@article{Zivanov2020,
title = "Estimation of high-order aberrations and anisotropic magnification from cryo-EM data sets in RELION-3.1",
journal = "IUCrJ",
volume = "7",
number = "2",
pages = "253--267",
year = "2020",
doi = "https://doi.org/10.1107/S2052252520000081",
author = "Zivanov, Jasenko and Nakane, Takanori and Scheres, Sjors H. W.",
}
"""
