 B'm.model.layers.1.input_layernorm.weightJ€•sÔ¹ñ¥¸ĞZ½:æão¹t•C:ü¸ƒx8JH":%:£ìŸ7|!º¸òÖ¸Lš¸x/=:Ê}ğ¹Í“¹)c»`~¸±¬l9…85]¾¹hL/¸ôÑR8ÍÎİ¸ƒ
¹%óºˆ±7ı!ã¸]l®9‡íÔ9 Xœ7pä
¹